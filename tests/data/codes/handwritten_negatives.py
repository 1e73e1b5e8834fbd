"""Handwritten mail full of number-like strings that has no code and no
verification link: travel, promotions, shipping, invoices, meetings,
receipts, sign-in notices, in the ten languages."""

from __future__ import annotations

NEGATIVES = [
    (
        "en",
        "Your flight booking confirmation - LH 2412",
        "Dear Ms Keller,\n\nThank you for "
        "booking with us. Your booking reference is X7K2LM.\n\nFlight LH 2412 Munich (MUC) - "
        "London Heathrow (LHR)\nDeparture: 14 Mar 2025 07:45, Terminal 2\nSeat: 14C\nE-ticket "
        "number: 220-2412345678\nTotal paid: EUR 412.30\n\nManage your booking: "
        "https://www.airline.example/manage?pnr=X7K2LM&name=KELLER",
    ),
    (
        "en",
        "Your trip confirmation code",
        "Your confirmation code is QX4T9B.\n\nRoundtrip "
        "New York (JFK) to San Francisco (SFO)\nDepart Fri, Jun 13 at 6:05 AM, Flight 1523\n"
        "Return Sun, Jun 22 at 9:40 PM, Flight 2290\nTotal: $486.40\nSeats 22A, 22B",
    ),
    (
        "de",
        "Ihre Buchungsbestätigung",
        "Sehr geehrter Herr Petrov,\n\nIhre Buchungsnummer "
        "lautet 7KQ2MX.\nZug ICE 597, Abfahrt 08:13 Berlin Hbf, Ankunft 12:07 München Hbf\nWagen "
        "12, Platz 45\nGesamtpreis: 79,90 €\nAuftragsnummer: 301 228 445 119",
    ),
    (
        "fr",
        "Confirmation de réservation",
        "Bonjour,\n\nVotre référence de réservation : "
        "HZ8K4Q.\nVol AF 1234 Paris CDG - Nice, départ le 12/07/2025 à 09h15.\nMontant : 189,00 €",
    ),
    (
        "es",
        "Confirmación de tu reserva",
        "Hola,\n\nTu localizador es: 9VJ3KT.\nVuelo IB 3104 "
        "Madrid - Barcelona, 21/05/2025 a las 17:30. Asiento 8F.\nImporte total: 96,50 €",
    ),
    (
        "en",
        "Black Friday: 30% off with code SAVE30",
        "Our biggest sale of 2025 is here!\n\nUse "
        "code SAVE30 at checkout for 30% off everything until 01.12.2025.\nFree shipping on "
        "orders over $50. Call us at 1-800-555-0199.",
    ),
    (
        "de",
        "Dein Gutschein wartet",
        "Hallo,\n\nmit dem Gutscheincode SOMMER25 sparst du 25 % "
        "auf alles. Gültig bis 31.08.2025. Mindestbestellwert 50 €.\nRabattcode nicht "
        "kombinierbar.",
    ),
    (
        "fr",
        "Offre spéciale",
        "Profitez de -20 % avec le code promo NOEL2025 jusqu'au 24/12.\n"
        "Livraison offerte dès 49 €.",
    ),
    (
        "es",
        "Tu cupón de descuento",
        "¡Hola!\n\nUsa el código de descuento VERANO15 y ahorra un "
        "15 %. Válido hasta el 30/09/2025.",
    ),
    (
        "pt",
        "Cupom exclusivo",
        "Olá!\n\nUse o cupom FRETEGRATIS e ganhe frete grátis em compras "
        "acima de R$ 199,90. Válido até 15/10/2025.",
    ),
    (
        "it",
        "Il tuo codice sconto",
        "Ciao,\n\nusa il codice sconto ESTATE10 per avere il 10% di sconto fino al 31/07/2025.",
    ),
    (
        "nl",
        "Jouw kortingscode",
        "Hoi,\n\nMet kortingscode ZOMER20 krijg je 20% korting tot en met 31-08-2025.",
    ),
    (
        "ru",
        "Промокод на скидку",
        "Здравствуйте!\n\nВаш промокод на скидку 500 ₽: LETO2025. "
        "Действует до 31.08.2025 при заказе от 3000 ₽.",
    ),
    ("zh", "优惠券到账", "您好！\n\n您的优惠码：SPRING88，满200元减30元，有效期至2025年6月30日。"),
    (
        "ja",
        "クーポンのお知らせ",
        "いつもありがとうございます。\n\nクーポンコード：SPRING10\n"
        "有効期限：2025年6月30日\nご注文金額3,000円以上で10%オフ",
    ),
    (
        "en",
        "Your package is on its way",
        "Good news! Your order #112-3345678-9012345 has "
        "shipped.\n\nCarrier: UPS\nTracking number: 1Z999AA10123456784\nEstimated delivery: "
        "Thursday, 03/13/2025\n\nTrack your package: https://www.ups.com/track?tracknum="
        "1Z999AA10123456784",
    ),
    (
        "de",
        "Ihre Sendung ist unterwegs",
        "Hallo,\n\nIhre Bestellung 302-1234567-1234567 wurde "
        "versandt.\nSendungsnummer: 00340434161094042557\nVoraussichtliche Zustellung: 13.03.2025"
        "\nPackstation 115, 10115 Berlin",
    ),
    (
        "fr",
        "Votre colis a été expédié",
        "Bonjour,\n\nNuméro de suivi : 6A12345678901\n"
        "Commande n° 4002719 du 12/03/2025\nAdresse : 12 rue de Rivoli, 75001 Paris",
    ),
    (
        "pt",
        "Seu pedido foi enviado",
        "Olá!\n\nCódigo de rastreamento: LB123456789BR\nPedido nº 88213\nCEP: 01310-100",
    ),
    (
        "ru",
        "Заказ отправлен",
        "Здравствуйте!\n\nВаш заказ № 58213490 отправлен.\nТрек-номер: "
        "RA123456789CN\nПочтовый индекс: 101000",
    ),
    (
        "zh",
        "您的订单已发货",
        "亲爱的顾客：\n\n订单号：202503120001234\n快递单号：SF1234567890123\n预计3月15日送达。",
    ),
    (
        "ja",
        "発送のお知らせ",
        "ご注文ありがとうございます。\n\n注文番号：250312-0001\n追跡番号："
        "1234-5678-9012\nお届け予定日：2025年3月15日",
    ),
    (
        "en",
        "Invoice INV-2025-00042 from Acme",
        "Hello,\n\nPlease find attached invoice "
        "INV-2025-00042.\nCustomer ID: 884213\nAmount due: $1,234.56\nDue date: April 15, 2025\n"
        "Bank: IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX",
    ),
    (
        "de",
        "Ihre Rechnung 2025-1042",
        "Sehr geehrte Damen und Herren,\n\nanbei Ihre Rechnung "
        "Nr. 2025-1042 vom 03.03.2025 über 1.234,56 €.\nKundennummer: 884213\nUSt-IdNr.: "
        "DE123456789\nBitte überweisen Sie den Betrag bis zum 17.03.2025.",
    ),
    (
        "en",
        "Invitation: Weekly sync @ Tue Mar 4, 2025 10:00 - 10:30 (CET)",
        "Join Zoom "
        "Meeting\nhttps://us02web.zoom.us/j/81234567890?pwd=aBcDeFgHiJkLmNoPqRsTuV\n\nMeeting ID: "
        "812 3456 7890\nPasscode: 482910\n\nOne tap mobile\n+16465588656,,81234567890#,,,,*482910# "
        "US (New York)\n\nDial by your location\n+1 646 558 8656 US (New York)",
    ),
    (
        "en",
        "Microsoft Teams meeting",
        "Join on your computer, mobile app or room device\n"
        "Click here to join the meeting\nMeeting ID: 293 847 561 209\nPasscode: Xy7bQ2\n\nOr call "
        "in (audio only)\n+1 323-555-0147,,628394017# United States, Los Angeles\nPhone "
        "Conference ID: 628 394 017#",
    ),
    (
        "en",
        "Your receipt from Coffee Co.",
        "Receipt #1042-7783\n\nFlat white $4.50\nCroissant "
        "$3.25\nTotal $7.75\nVisa ending in 4242\nAuth code: 083421\n03/12/2025 08:14 AM",
    ),
    (
        "en",
        "Your support ticket #48213 has been updated",
        "Hi Alex,\n\nTicket #48213 (Case "
        "ID 04829173) was updated on 2025-03-12 at 14:02 UTC.\nError code: 0x80070005\nPlease "
        "reply to this email to add a comment.",
    ),
    (
        "en",
        "Acme Weekly: 5 things you missed",
        "Since 1998 we've shipped to 120 countries.\n\n"
        "1. Spring collection from $29.99\n2. Store hours: Mon-Fri 9:00-18:00\n3. New store at "
        "221B Baker Street, London NW1 6XE\n4. Call 0800 123 4567\n5. Version 2.14.3 of our app",
    ),
    (
        "en",
        "Your password was changed",
        "Hi,\n\nThe password for your account was changed on "
        "March 12, 2025 at 14:02 from IP 203.0.113.42 (Chrome on Windows 10).\n\nIf this wasn't "
        "you, reset your password at https://example.com/password/reset and contact support.",
    ),
    (
        "en",
        "Your Acme order has been delivered",
        "Order number 483920 was delivered on "
        "12/03/2025.\nRate your order: https://acme.example/orders/483920/review?token="
        "a8F3kL9qZx2MvB7nC4tY",
    ),
    (
        "de",
        "Neue Anmeldung bei Ihrem Konto",
        "Hallo,\n\nam 12.03.2025 um 14:02 Uhr wurde "
        "Ihr Konto von einem neuen Gerät verwendet (IP 203.0.113.42, Berlin).\nWaren Sie das "
        "nicht? Ändern Sie Ihr Passwort.",
    ),
    (
        "ru",
        "Новый вход в аккаунт",
        "Здравствуйте!\n\n12.03.2025 в 14:02 выполнен вход в "
        "ваш аккаунт с устройства iPhone (IP 203.0.113.42).\nЕсли это были не вы, смените пароль.",
    ),
    (
        "zh",
        "账户登录提醒",
        "您的账户于2025年3月12日14:02在新设备上登录（IP：203.0.113.42）。"
        "如非本人操作，请及时修改密码。客服电话：400-123-4567",
    ),
    (
        "ja",
        "ログインのお知らせ",
        "2025年3月12日 14:02に新しい端末からログインがありました。\n"
        "IPアドレス：203.0.113.42\nお心当たりがない場合はパスワードを変更してください。",
    ),
    (
        "en",
        "Your gift card",
        "Here is your $50 gift card!\n\nGift card code: ABCD-EFGH-JKLM-"
        "NPQR\nPIN: 7731\nRedeem at https://shop.example/giftcard",
    ),
    (
        "en",
        "Your bank statement is ready",
        "Account ending 4821\nStatement period: "
        "01/02/2025 - 28/02/2025\nSort code: 20-00-00\nClosing balance: £2,450.18",
    ),
    (
        "it",
        "Conferma d'ordine n. 100045231",
        "Gentile cliente,\n\nil tuo ordine n. 100045231 "
        "del 12/03/2025 è stato confermato.\nTotale: 59,90 €\nCAP di consegna: 20121 Milano",
    ),
    (
        "nl",
        "Je bestelling is onderweg",
        "Hoi,\n\nJe bestelnummer is 2025-88213. Track & "
        "trace-code: 3SABCD1234567.\nPostcode: 1012 AB Amsterdam",
    ),
    (
        "es",
        "Factura disponible",
        "Hola,\n\nTu factura F-2025-0312 por importe de 45,30 € ya "
        "está disponible. Número de cliente: 7712043. Código postal: 28013.",
    ),
    (
        "en",
        "Two-factor authentication enabled",
        "Two-factor authentication was turned on for "
        "your account on 2025-03-12 14:02 UTC. Your recovery codes were generated; keep them "
        "safe. Need help? Visit https://help.example.com/2fa",
    ),
    (
        "en",
        "Re: the code review",
        "Hey,\n\nI looked at the code in PR #4821. Line 1337 has an "
        "off-by-one; the test on 2025-03-12 failed with exit code 137. Can we pair at 15:30?\n\n"
        "Jonas",
    ),
]
