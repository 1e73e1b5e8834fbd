"""The words app/codes.py reads mail with, per language (en, de, fr, es, pt,
it, nl, ru, zh, ja, and a few more where senders often write them: pl, sv,
tr, ko, uk, cs). Data only. All lower case: the extractor matches them
case-insensitively; CJK entries match inside words (no spaces there).
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    """A word list written a group a line, "|" between words; "#" lines are comments."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return tuple(w.strip() for line in lines for w in line.split("|") if w.strip())


# Words that name a one-time code. "Strong" ones say what kind of code it
# is; a bare "code" is weak and needs a verification context in the mail.
STRONG_CODE = _words(
    """
    # en
    verification code | verify code | confirmation code | security code | login code
    log-in code | sign-in code | signin code | sign in code | one-time code
    one time code | one-time password | one time password | one-time passcode
    one-time pin | authentication code | 2fa code | two-factor code
    access code | activation code | recovery code | reset code | registration code
    passcode | otp | pin code | validation code | unlock code
    temporary code | single-use code | invitation code | sign-up code | signup code
    # de
    bestätigungscode | verifizierungscode | sicherheitscode | anmeldecode | einmalcode
    einmalpasswort | einmal-passwort | einmalkennwort | zugangscode | freischaltcode
    aktivierungscode | authentifizierungscode | prüfcode | login-code | tan
    wiederherstellungscode | registrierungscode
    # fr
    code de vérification | code de confirmation | code de sécurité | code de connexion
    code d'accès | code d’accès | code à usage unique | code d'activation
    code de validation | code temporaire | mot de passe à usage unique
    code de réinitialisation | code d'authentification
    # es
    código de verificación | código de confirmación | código de seguridad
    código de acceso | código de inicio de sesión | código de un solo uso
    código de activación | código de validación | contraseña de un solo uso
    código de autenticación | código de restablecimiento
    # pt
    código de verificação | código de confirmação | código de segurança
    código de acesso | código de login | código de uso único | código de ativação
    código de validação | senha de uso único | código de autenticação
    # it
    codice di verifica | codice di conferma | codice di sicurezza | codice di accesso
    codice monouso | codice di attivazione | codice di autenticazione
    codice di convalida | password monouso | codice otp
    # nl
    verificatiecode | bevestigingscode | beveiligingscode | inlogcode | toegangscode
    eenmalige code | activeringscode | authenticatiecode | aanmeldcode
    # ru, uk
    код подтверждения | проверочный код | одноразовый код | код доступа
    код для входа | код безопасности | код верификации | код активации
    одноразовый пароль | код авторизации | код підтвердження | код безпеки
    код для входу | одноразовий код
    # zh
    验证码 | 校验码 | 动态码 | 确认码 | 驗證碼 | 認證碼 | 动态密码 | 一次性密码
    安全码 | 登录码 | 登录代码 | 验证代码 | 确认代码 | 安全代码 | 驗證代碼
    # ja
    認証コード | 確認コード | ワンタイムパスワード | ワンタイムコード | 認証番号
    セキュリティコード | 確認番号 | 検証コード | ログインコード | パスコード
    # ko, pl, sv, tr, cs
    인증번호 | 인증 코드 | 인증코드 | 확인 코드 | kod weryfikacyjny
    kod potwierdzający | kod jednorazowy | kod dostępu | kod logowania
    verifieringskod | bekräftelsekod
    säkerhetskod | engångskod | doğrulama kodu | onay kodu | güvenlik kodu
    ověřovací kód | potvrzovací kód | bezpečnostní kód
    """
)
WEAK_CODE = _words(
    """
    code | codes | código | codigo | codice | код | kod | kód | kode
    token | jeton | токен | トークン | 令牌 | pin | コード | 코드 | 代码 | 代碼
    """
)

# A code named by one of these words is not a one-time code.
NOT_CODE = _words(
    """
    # en
    promo | promotion | promotional | discount | coupon | voucher | gift | zip
    postal | post | area | country | dial | dial-in | tracking | track | booking
    reservation | reference | error | exit | status | source | qr | bar | product
    item | article | sort | swift | bank | tax | vat | customer | client
    referral | offer | sale | auth code | approval code | hard | kernel | exit
    autorisatie | autorisierung | autorisation | autorización | autorização
    autorizzazione | authorisation | clearing | routing | bic | iban | dress | colour | color
    country | airport | flight
    authorization | authorisation | meeting | conference | participant | room
    door | lock | wifi | wi-fi | locker | pickup | parcel | package | shipping
    order | invoice | account number | member | loyalty | event | ticket | seat
    style | html | css | response | return | reason
    # de
    gutschein | rabatt | aktions | postleitzahl | plz | sendungs | fehler
    kunden | bestell | buchungs | sendungsverfolgung | tracking- | abhol
    # fr
    promo | réduction | postal | d'erreur | client | de suivi | de réservation
    # es / pt / it
    descuento | promocional | rastreo | seguimiento | reserva | rastreamento
    cupón | cupom | sconto | promozionale | postale | fiscale | spedizione
    prenotazione | de desconto | postal
    # nl
    korting | actie | postcode | track & trace | track-and-trace | bestel
    # ru
    промо | почтовый | трек | заказа | скидк | купон
    # zh, ja
    优惠 | 邮编 | 邮政 | 快递 | 订单 | クーポン | 郵便 | 割引 | 追跡 | 注文 | 予約
    """
)

# Words that make a mail about verification, sign-in or recovery: a weak
# code word counts only where one of these is in the subject or the body.
CONTEXT = _words(
    """
    verif | confirm | one-time | one time | 2fa | two-factor | two-step
    2-step | sign in | sign-in | signin | log in | login | log-in | password
    authenticat | security | otp | passcode | activate | validate | recover
    bestätig | anmeld | einmal | passwort | sicherheit | verifizier | login
    vérif | connexion | connecter | mot de passe | sécurité | usage unique
    verific | confirma | iniciar sesión | contraseña | seguridad | acceder
    verifica | confirmação | senha | segurança | entrar | acesso
    conferma | accedi | accesso | sicurezza | verifica
    bevestig | inlog | wachtwoord | beveilig | aanmeld
    подтвер | провер | вход | войти | пароль | одноразов | безопасн
    验证 | 驗證 | 登录 | 登錄 | 密码 | 確認 | 認証 | ログイン | パスワード
    인증 | 로그인 | weryfik | logowa | verifier | doğrula | giriş | ověř
    # asked to type a code in: as telling as the words above
    enter the | enter this | enter your | eingeben | gib den | gib diesen | gib deinen
    saisissez | entrez
    introduce | ingresa | insira | digite | inserisci | voer de | voer deze | введите | 输入
    入力 | 입력 | wpisz | ange koden | girin | geben sie | wprowadź | potwierdz | hasł
    lösenord | verifiering | şifre | sıfırla | підтвер | верифік | увійти | вхід
    # sign-up
    registration | register | sign up | sign-up | signup | registrier | inscription
    registro | cadastro | registrazione | registratie | регистрац | 注册 | 登録
    # a code that expires is a one-time code
    expire | valid for | remain active | gültig | läuft | válido | caduca | scade
    verloopt | geldig | действител | истека | 有效 | 有効 | 유효
    """
)

# Units after a number: a duration or a quantity, not a code.
UNITS = _words(
    """
    minutes | minute | mins | min | minuten | minutos | minuti | minuty | minut
    минут | минуты | мин | hours | hour | hrs | stunden | stunde | heures | heure
    horas | hora | ore | uur | часов | часа | days | day | tage | jours | días
    dias | giorni | dagen | дней | seconds | secs | sekunden | segundos | secondi
    secondes | 分 | 時間 | 小时 | 天 | 秒 | 분 | 시간 | dakika | saat
    """
)

# A code word in mail about these is a booking or meeting code: "confirmation
# code" of a flight, "passcode" of a video call.
TRAVEL = _words(
    """
    flight | boarding | itinerary | booking | reservation | hotel | check-in
    departure | airline | pnr | flug | buchung | reservierung | abflug | numéro de vol | votre vol
    réservation | vuelo | reserva | voo | volo | prenotazione | vlucht | boeking
    рейс | бронир | 航班 | 预订 | 航空 | 便名 | 予約
    """
)
MEETING = _words(
    """
    meeting | zoom | webinar | conference | dial | microsoft teams | webex | besprechung
    konferenz | réunion | reunión | reunião | riunione | vergadering | встреч
    конференц | 会议 | 会議
    """
)
AMBIGUOUS_CODE = ("confirmation code", "passcode", "access code", "pin code", "pin", "tan")

# Link texts that say nothing themselves ("click here"): the words around say it.
LINK_GENERIC = _words(
    """
    here | click here | this link | link | hier | ici | cliquez ici | aquí | aqui
    qui | clicca qui | klik hier | здесь | сюда | 这里 | 此处 | こちら | 여기
    """
)

# Link wording: anchor text or the words before a URL that ask the reader
# to verify, confirm, sign in, reset, or accept (strong ones alone suffice).
LINK_STRONG = _words(
    """
    verify | verif | confirm | activate | activation | reset | magic | validate
    recover | accept | invitation | invite | set password | set up your password
    create your password | choose a new | complete registration
    complete your registration | finish signing | finish sign
    bestätig | verifizier | aktivier | zurücksetzen | annehmen | beitreten
    vérifi | confirmer | activer | réinitialis | accepter | rejoindre
    verificar | confirmar | activar | restablecer | aceptar | unirte
    verificar | ativar | redefinir | aceitar
    verifica | conferma | attiva | reimposta | accetta
    bevestig | activeer | verifieer | opnieuw instellen | accepteer
    подтверд | активир | сбросить | сброс | восстанов | принять
    验证 | 驗證 | 确认 | 激活 | 重置 | 重設 | 確認 | 認証 | 再設定 | 有効化
    인증 | 확인 | 재설정 | potwierdź | zweryfikuj | bekräfta | doğrula
    sıfırla | şifre | підтверд | відновити | скинути
    einladung | invitation | invitación | convite | invito | uitnodiging | приглаш
    邀请 | 邀請 | 招待 | 초대 | davet | zaproszen | dołącz | pozvánk
    """
)
LINK_WEAK = _words(
    """
    sign in | sign-in | log in | login | log-in | continue | click here | join
    the link below | following link | link below | this link | open link
    anmelden | einloggen | se connecter | connexion | iniciar sesión | entrar
    accedi | inloggen | войти | вход | 登录 | ログイン | 로그인
    lien ci-dessous | enlace | link abaixo | link qui sotto | ссылк | 链接 | リンク
    link | lien
    """
)
# URL words of verification endpoints...
URL_WORDS = _words(
    """
    verify | verif | confirm | activat | reset | password | passwd | magic
    callback | token | recover | invit | accept | validat | email-change
    finish-signup | set-password | optin | opt-in | subscribe/confirm | action-token
    otp | delete | updateemail | email_change | change-email | changeemail
    confirm_email
    """
)
# ... and of pages that are only sometimes one (a plain login page is not).
URL_WEAK_WORDS = ("login", "signin", "sign-in", "sign_in", "auth", "join", "signup", "register")
# A link with one of these in its URL is never the verification link...
LINK_NEVER_URL = _words(
    """
    unsubscribe | opt-out | optout | /preferences | privacy | /terms | /legal
    revoke | /report | /help | /support | /contact | /faq | abmelden | abbestellen
    datenschutz | impressum | desabonner | desinscri | /download | /invoice
    .pdf | .png | .jpg | .jpeg | .gif | .svg | .webp | .ics
    """
)
# ... nor one with one of these in its text.
LINK_NEVER_TEXT = _words(
    """
    unsubscribe | opt-out | optout | preferences | privacy | terms | legal
    revoke | report | help | support | contact | faq | view in browser
    view online | web version | deauthori | not you | wasn't you | was not you
    abmelden | abbestellen | datenschutz | impressum | désabonner | désinscri
    darse de baja | cancelar suscripción | descadastr | cancelar inscrição
    disiscriv | afmelden | uitschrijven | отписат | 退订 | 取消订阅 | 配信停止
    登録解除 | widerruf | melden | track | download | invoice | order | receipt
    logo | avatar | profile | settings
    """
)
SOCIAL_HOSTS = _words(
    """
    twitter.com | x.com | facebook.com | instagram.com | linkedin.com | youtube.com
    tiktok.com | pinterest. | reddit.com | github.com | apps.apple.com
    play.google.com | medium.com | discord.gg | t.me | wa.me | mastodon.
    """
)
