"""The text of the handwritten messages (handwritten.py turns them into
labelled messages): verification mail per language, and mail full of
number-like strings that has no code and no verification link."""

from __future__ import annotations

FOOTER = (
    "\n\n--\nAcme Inc., 548 Market St #12345, San Francisco, CA 94104, USA\n"
    "Privacy: https://acme.example/privacy | Terms: https://acme.example/terms\n"
    "Unsubscribe: https://acme.example/unsubscribe?u=8f3a9c2e71b4&list=4412\n"
    "Follow us: https://twitter.com/acme https://www.facebook.com/acme\n"
)

# (lang, subject, text) with {code}: a plain one-time code mail per language.
CODE_MAILS = [
    (
        "en",
        "Your verification code",
        "Hi,\n\nYour verification code is: {code}\n\n"
        "It expires in 10 minutes. If you didn't request it, ignore this email.",
    ),
    (
        "en",
        "{code} is your login code",
        "Use {code} to sign in to Acme.\n\nThis code is valid for 15 minutes and can be used once.",
    ),
    (
        "de",
        "Ihr Bestätigungscode",
        "Hallo,\n\nIhr Bestätigungscode lautet: {code}\n\nDer Code ist "
        "10 Minuten gültig. Bitte geben Sie ihn nicht weiter.",
    ),
    (
        "de",
        "Anmeldung bei Acme",
        "Hallo Jonas,\n\nbitte gib diesen Sicherheitscode ein, um dich "
        "anzumelden:\n\n{code}\n\nFalls du das nicht warst, ändere bitte dein Passwort.",
    ),
    (
        "fr",
        "Votre code de vérification",
        "Bonjour,\n\nVotre code de vérification est : {code}\n\nCe code expire dans 10 minutes.",
    ),
    (
        "fr",
        "Code de connexion",
        "Bonjour Chloé,\n\nSaisissez le code suivant pour vous "
        "connecter :\n\n{code}\n\nSi vous n'êtes pas à l'origine de cette demande, "
        "ignorez ce message.",
    ),
    (
        "es",
        "Tu código de verificación",
        "Hola,\n\nTu código de verificación es {code}.\n\n"
        "Caduca en 10 minutos. No lo compartas con nadie.",
    ),
    (
        "es",
        "Código de acceso",
        "Hola Diego:\n\nUtiliza este código para iniciar sesión:\n\n"
        "{code}\n\nEl código es válido durante 15 minutos.",
    ),
    (
        "pt",
        "Seu código de verificação",
        "Olá,\n\nSeu código de verificação é: {code}\n\nEle expira em 10 minutos.",
    ),
    (
        "pt",
        "Código de acesso",
        "Olá Ana,\n\nUse o código abaixo para entrar na sua conta:\n\n"
        "{code}\n\nSe não foi você, ignore este e-mail.",
    ),
    (
        "it",
        "Il tuo codice di verifica",
        "Ciao,\n\nil tuo codice di verifica è {code}.\n\nIl codice scade tra 10 minuti.",
    ),
    (
        "it",
        "Codice di accesso",
        "Ciao Luca,\n\ninserisci questo codice per accedere:\n\n"
        "{code}\n\nSe non hai richiesto l'accesso, ignora questa email.",
    ),
    (
        "nl",
        "Je verificatiecode",
        "Hoi,\n\nJe verificatiecode is: {code}\n\nDeze code verloopt over 10 minuten.",
    ),
    (
        "nl",
        "Inloggen bij Acme",
        "Hallo Sanne,\n\nGebruik deze code om in te loggen:\n\n{code}\n\n"
        "Heb je dit niet aangevraagd? Dan kun je deze e-mail negeren.",
    ),
    (
        "ru",
        "Код подтверждения",
        "Здравствуйте!\n\nВаш код подтверждения: {code}\n\n"
        "Код действителен 10 минут. Никому не сообщайте его.",
    ),
    (
        "ru",
        "Вход в аккаунт",
        "Здравствуйте, Иван!\n\nДля входа введите одноразовый код:\n\n"
        "{code}\n\nЕсли это были не вы, просто проигнорируйте это письмо.",
    ),
    ("zh", "您的验证码", "您好！\n\n您的验证码是：{code}\n\n验证码10分钟内有效，请勿泄露给他人。"),
    (
        "zh",
        "登录验证",
        "尊敬的用户：\n\n您正在登录 Acme 账户，本次操作的动态码为 {code}，5分钟内有效。",
    ),
    (
        "ja",
        "認証コードのお知らせ",
        "いつもご利用ありがとうございます。\n\n認証コード：{code}\n\n有効期限は10分です。",
    ),
    (
        "ja",
        "ログイン確認",
        "ログインするには、次の確認コードを入力してください。\n\n{code}\n\n"
        "このメールに心当たりがない場合は破棄してください。",
    ),
    (
        "ko",
        "인증번호 안내",
        "안녕하세요.\n\n인증번호 [{code}]를 입력해 주세요.\n\n유효시간은 3분입니다.",
    ),
    (
        "pl",
        "Twój kod weryfikacyjny",
        "Cześć,\n\nTwój kod weryfikacyjny to: {code}\n\nKod wygaśnie za 10 minut.",
    ),
    (
        "tr",
        "Doğrulama kodunuz",
        "Merhaba,\n\nDoğrulama kodunuz: {code}\n\nKod 10 dakika geçerlidir.",
    ),
    (
        "sv",
        "Din verifieringskod",
        "Hej,\n\nDin verifieringskod är {code}.\n\nKoden gäller i 10 minuter.",
    ),
]


LINK_MAILS = [
    (
        "en",
        "Confirm your subscription",
        "Please confirm your subscription to the Acme newsletter",
        "Yes, subscribe me",
        "https://acme.us21.list-manage.com/subscribe/confirm?u={hex}&id={hex10}&e={hex10}",
    ),
    (
        "en",
        "Verify your email for Slack",
        "Click the button below to confirm your email address.",
        "Confirm Email Address",
        "https://u12345.ct.sendgrid.net/ls/click?upn={tok}",
    ),
    (
        "en",
        "Reset your password",
        "We received a request to reset the password for your "
        "account. This link expires in 60 minutes.",
        "Reset password",
        "https://accounts.example.com/reset?token={tok}",
    ),
    (
        "de",
        "Bitte bestätige deine E-Mail-Adresse",
        "Fast geschafft! Bitte bestätige deine E-Mail-Adresse, um dein Konto zu aktivieren.",
        "E-Mail-Adresse bestätigen",
        "https://www.example.de/konto/aktivieren/{tok}",
    ),
    (
        "fr",
        "Confirmez votre adresse e-mail",
        "Merci de votre inscription ! Confirmez votre adresse e-mail pour activer votre compte.",
        "Confirmer mon adresse",
        "https://www.exemple.fr/inscription/confirmation?cle={tok}",
    ),
    (
        "es",
        "Restablece tu contraseña",
        "Hemos recibido una solicitud para restablecer tu contraseña.",
        "Restablecer contraseña",
        "https://cuenta.ejemplo.es/restablecer/{tok}",
    ),
    (
        "pt",
        "Confirme seu e-mail",
        "Clique no botão abaixo para confirmar seu endereço de e-mail.",
        "Confirmar e-mail",
        "https://conta.exemplo.com.br/confirmar?token={tok}",
    ),
    (
        "it",
        "Conferma il tuo indirizzo email",
        "Clicca sul pulsante per confermare il tuo indirizzo email e attivare l'account.",
        "Conferma email",
        "https://account.esempio.it/attiva/{tok}",
    ),
    (
        "nl",
        "Bevestig je e-mailadres",
        "Klik op de knop hieronder om je e-mailadres te bevestigen.",
        "E-mailadres bevestigen",
        "https://mijn.voorbeeld.nl/bevestig/{tok}",
    ),
    (
        "ru",
        "Подтвердите адрес электронной почты",
        "Чтобы завершить регистрацию, подтвердите адрес электронной почты.",
        "Подтвердить почту",
        "https://id.primer.ru/confirm?key={tok}",
    ),
    (
        "zh",
        "请验证您的邮箱",
        "感谢注册！请点击下方按钮验证您的邮箱地址。",
        "验证邮箱",
        "https://passport.example.cn/verify?code={tok}",
    ),
    (
        "ja",
        "メールアドレスの確認",
        "ご登録ありがとうございます。以下のボタンからメールアドレスを確認してください。",
        "メールアドレスを確認する",
        "https://example.jp/account/verify/{tok}",
    ),
    (
        "en",
        "Your magic link",
        "Here is the link you asked for to sign in to Notion.",
        "Log in to Notion",
        "https://www.notion.so/loginwithemail?password={tok}&isSignup=false",
    ),
]
