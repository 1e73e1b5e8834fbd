"""Held-out messages: written after the extractor's rules were tuned on the
other files, in the style of well-known services' mail (not copied from
them), and measured once before any rule was changed for them (the first
figures are in docs/decisions.md). {code} and {link} are filled in."""

from __future__ import annotations

from collections.abc import Callable

from build import Values, message
from render import text_to_html

Built = tuple[dict[str, object], list[dict[str, object]]]

D6: Callable[[Values], str] = lambda v: v.digits(6)  # noqa: E731
# (lang, subject, text, code shape or None, link path or None)
MAILS = [
    ("en", "[GitHub] Please verify your device", "Hey octocat!\n\nA sign in attempt "
     "requires further verification because we did not recognize your device. To complete "
     "the sign in, enter the verification code on the unrecognized device.\n\nDevice: Chrome "
     "on Windows\nVerification code: {code}\n\nIf you did not attempt to sign in to your "
     "account, your password may be compromised.", D6, None),
    ("en", "Slack confirmation code: {code}", "Confirm your email address\n\nYour "
     "confirmation code is below — enter it in your open browser window and we'll help you "
     "get signed in.\n\n{code}\n\nIf you didn't request this email, there's nothing to worry "
     "about.", lambda v: v.grouped("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", (3, 3)), None),
    ("en", "Microsoft account security code", "Please use the following security code for "
     "the Microsoft account ja***@example.com.\n\nSecurity code: {code}\n\nIf you don't "
     "recognize the Microsoft account ja***@example.com, you can click here to remove your "
     "email address from that account.\n\nThanks,\nThe Microsoft account team", D6, None),
    ("en", "Your Steam account: Access from new computer", "Dear jonas,\n\nHere is the Steam "
     "Guard code you need to login to account jonas:\n\n{code}\n\nThis email was generated "
     "because of a login attempt from a web or mobile device located at 203.0.113.7 (DE).",
     lambda v: v.chars("BCDFGHJKMNPQRTVWXY2346789", 5), None),
    ("en", "{code} is your Instagram code", "Hi alex,\n\nSomeone tried to log in to your "
     "Instagram account. If this was you, please use the following code to confirm your "
     "identity:\n\n{code}\n\nIf this wasn't you, please reset your password.", D6, None),
    ("en", "Your one-time passcode", "Hello,\n\nYour one-time passcode (OTP) for your "
     "transaction of $249.99 at ACME STORE on card ending 4821 is {code}. Do not share it "
     "with anyone. Valid for 5 minutes.", D6, None),
    ("en", "Verify your email address", "Thanks for signing up for Figma!\n\nPlease verify "
     "your email address by clicking the link below:\n\n{link}\n\nThis link expires in 24 "
     "hours.", None, "https://www.figma.example/verify?token="),
    ("en", "Complete your Discord registration", "Hey jonas,\n\nThanks for registering an "
     "account with Discord! Before we get started, we just need to confirm that this is "
     "you. Click below to verify your email address:\n\nVerify Email ( {link} )\n\nNeed "
     "help? Contact our support team.", None, "https://click.discord.example/ls/click?upn="),
    ("en", "Reset your Spotify password", "Hi,\n\nNo need to worry, you can reset your "
     "Spotify password by clicking the link below:\n\n{link}\n\nYour username is: jonas91\n\n"
     "If you didn't ask to reset your password, you can ignore this email.", None,
     "https://accounts.spotify.example/password-reset/complete?flow_ctx="),
    ("en", "Your login link for Linear", "Click the link below to log in to Linear. It "
     "expires in 15 minutes.\n\nLog in to Linear: {link}\n\nOr enter this temporary code: "
     "{code}", lambda v: v.chars("abcdefghjkmnpqrstuvwxyz23456789", 8), "https://linear.example"
     "/auth/email/callback?token="),
    ("de", "Ihr Sicherheitscode für Amazon", "Hallo,\n\nfür Ihre Sicherheit benötigen wir "
     "eine zusätzliche Bestätigung. Geben Sie bitte den folgenden Code ein:\n\n{code}\n\nDer "
     "Code ist 10 Minuten gültig. Bestellnummer 302-1234567-1234567 ist nicht betroffen.",
     D6, None),
    ("de", "Bestätige deine E-Mail-Adresse", "Hallo Jonas,\n\nbitte bestätige deine "
     "E-Mail-Adresse, indem du auf den folgenden Link klickst:\n\n{link}\n\nDein Team von "
     "Kleinanzeigen", None, "https://www.kleinanzeigen.example/m-email-bestaetigen.html?uuid="),
    ("fr", "Votre code de connexion", "Bonjour,\n\nVoici votre code de connexion à usage "
     "unique : {code}\n\nIl expirera dans 15 minutes. Votre commande n° 4002719 reste "
     "inchangée.", D6, None),
    ("fr", "Réinitialisation de votre mot de passe", "Bonjour,\n\nPour réinitialiser votre "
     "mot de passe, cliquez sur le lien suivant :\n{link}\n\nCe lien est valable 1 heure.",
     None, "https://compte.exemple.fr/mot-de-passe/nouveau?jeton="),
    ("es", "Código de verificación de tu cuenta", "Hola:\n\nTu código de verificación es: "
     "{code}\n\nSi no has solicitado este código, ignora este mensaje. Pedido 88213, importe "
     "45,30 €.", D6, None),
    ("pt", "Confirme seu cadastro", "Olá!\n\nPara concluir seu cadastro, confirme seu e-mail "
     "clicando no link abaixo:\n\n{link}\n\nCEP cadastrado: 01310-100", None,
     "https://conta.exemplo.com.br/cadastro/confirmar/"),
    ("it", "Codice di accesso", "Ciao,\n\nil tuo codice di accesso è {code}. Scade tra 10 "
     "minuti.\n\nOrdine n. 100045231 del 12/03/2025.", D6, None),
    ("nl", "Je inlogcode", "Hoi,\n\nGebruik deze code om in te loggen: {code}\n\nDe code "
     "verloopt over 15 minuten. Bestelnummer: 2025-88213.", D6, None),
    ("ru", "Код для входа", "Здравствуйте!\n\nКод для входа в аккаунт: {code}\n\nНикому не "
     "сообщайте этот код. Заказ № 58213490 доставлен.", D6, None),
    ("zh", "【Acme】登录验证码", "您的登录验证码为：{code}，5分钟内有效。订单号：202503120001234。",
     D6, None),
    ("ja", "【Acme】ワンタイムパスワードのお知らせ", "ワンタイムパスワード：{code}\n\n"
     "有効期限は発行から10分です。注文番号：250312-0001", D6, None),
    # not codes, not links
    ("en", "Your Amazon.com order #112-3345678-9012345", "Hello Alex,\n\nThank you for "
     "shopping with us. Your order #112-3345678-9012345 will arrive Thursday, March 13.\n\n"
     "Order Total: $58.20\nView or manage order: https://www.amazon.example/gp/css/order-"
     "details?orderID=112-3345678-9012345&ref_=pe_2640190_232586610", None, None),
    ("en", "Your Uber receipt", "Thanks for riding, Alex\n\nTotal $23.48\nTrip fare $19.20\n"
     "Booking fee $2.75\n11:42 PM | 221B Baker Street, London NW1 6XE\nLicense plate: "
     "AB12 CDE\nPay with Visa ••••4242", None, None),
    ("en", "Your Netflix membership", "Hi Alex,\n\nYour next billing date is 15 April 2025. "
     "Amount: €13.99. Member since 2018.\n\nQuestions? Visit the Help Center or call "
     "1-866-579-7172. Reference code: NFX-88213-AB", None, None),
    ("en", "Webinar tomorrow: Scaling Postgres", "Join us on March 14, 2025 at 10:00 AM PT."
     "\n\nJoin the webinar: https://events.example.com/webinar/join/8821349?tk=Ab12Cd34Ef56"
     "Gh78\nMeeting ID: 882 1349 0021\nPasscode: 771204", None, None),
    ("de", "Ihre Bahn-Buchung", "Auftragsnummer: 301228445119\nBuchungscode: 7KQ2MX\nICE 597 "
     "am 14.03.2025, 08:13 Uhr, Wagen 12, Platz 45\nPreis: 79,90 €", None, None),
    ("fr", "Votre facture", "Facture n° F-2025-0312 du 12/03/2025\nMontant TTC : 45,30 €\n"
     "Code client : 7712043\nRéférence de paiement : RF18 5390 0754 7034", None, None),
]  # fmt: skip


def heldout() -> Built:
    v = Values("heldout")
    out = []
    for n, (lang, subject, text, shape, path) in enumerate(MAILS):
        code = shape(v) if shape else None
        link = path + v.urlsafe(40) if path else None
        body = text.format(code=code, link=link)
        html = text_to_html(body) if n % 2 else ""
        body = "" if n % 4 == 3 else body  # a quarter send HTML only
        out.append(message(f"heldout/{lang}/{n}", "", lang, subject.format(code=code), body,
                           html, [code] if code else [], link))  # fmt: skip
    source = {"repository": "(written for this set)", "commit": "", "licence": "as this repository"}
    return source, out


BUILDERS: dict[str, Callable[[], Built]] = {"heldout": heldout}
