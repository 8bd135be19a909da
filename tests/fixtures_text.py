"""Seeded generated text in many languages, for tests that must run without ../shared.

Each language has a tiny phrase grammar (subject / verb / object / ending, a handful of
real phrases in each slot, written for these tests): a sentence picks one phrase per slot,
so a few dozen phrases give thousands of distinct, grammatical-looking sentences in the
language's own script, stop words and letter statistics. Everything takes a seed:
the same call gives the same text on every machine.
"""
from __future__ import annotations

import random

# lang: "subjects / verbs / objects / endings", phrases separated by "|".
_GRAMMARS = {
    "en": "The old farmer|My younger sister|A tired teacher|The small river boat|Our new neighbour|The village doctor"
          "|A young painter|The quiet student|Every careful driver|The captain of the ship"
          " / carried|painted|repaired|described|found|watched|borrowed|cleaned|opened|remembered"
          " / the heavy wooden table|a letter from the city|the broken garden gate|some bread and cheese"
          "|the map of the northern coast|an umbrella with a green handle|the long report about the harbour"
          "|two baskets of apples|the key to the library"
          " / before the storm arrived|after lunch on Sunday|while the children were sleeping|with great patience"
          "|near the old railway station|because nobody else would do it|during the winter holidays"
          "|without saying a word|in the early morning light",
    "de": "Der alte Bauer|Meine jüngere Schwester|Ein müder Lehrer|Die kleine Katze|Unser neuer Nachbar|Der Arzt im Dorf"
          "|Eine junge Malerin|Der fleißige Student"
          " / trug|malte|reparierte|beschrieb|fand|beobachtete|lieh sich|putzte|öffnete"
          " / den schweren Holztisch|einen Brief aus der Stadt|das kaputte Gartentor|etwas Brot und Käse"
          "|die Karte der nördlichen Küste|einen Schirm mit grünem Griff|die Schlüssel für die Bibliothek"
          " / bevor das Gewitter kam|nach dem Mittagessen am Sonntag|während die Kinder schliefen|mit großer Geduld"
          "|in der Nähe des alten Bahnhofs|weil es sonst niemand tun wollte|ohne ein Wort zu sagen",
    "fr": "Le vieux fermier|Ma petite sœur|Un professeur fatigué|Le petit bateau|Notre nouveau voisin|Le médecin du village"
          "|Une jeune peintre|L'étudiant discret"
          " / a porté|a peint|a réparé|a décrit|a trouvé|a regardé|a emprunté|a nettoyé|a ouvert"
          " / la lourde table en bois|une lettre de la ville|le portail cassé du jardin|du pain et du fromage"
          "|la carte de la côte nord|un parapluie à poignée verte|la clé de la bibliothèque"
          " / avant l'arrivée de l'orage|après le déjeuner du dimanche|pendant que les enfants dormaient"
          "|avec une grande patience|près de la vieille gare|parce que personne d'autre ne voulait le faire"
          "|sans dire un mot",
    "es": "El viejo granjero|Mi hermana menor|Un maestro cansado|El pequeño barco|Nuestro nuevo vecino|El médico del pueblo"
          "|Una joven pintora|El estudiante callado"
          " / llevó|pintó|reparó|describió|encontró|miró|pidió prestado|limpió|abrió"
          " / la pesada mesa de madera|una carta de la ciudad|la puerta rota del jardín|un poco de pan y queso"
          "|el mapa de la costa norte|un paraguas con el mango verde|la llave de la biblioteca"
          " / antes de que llegara la tormenta|después del almuerzo del domingo|mientras los niños dormían"
          "|con mucha paciencia|cerca de la vieja estación|porque nadie más quería hacerlo|sin decir una palabra",
    "it": "Il vecchio contadino|Mia sorella minore|Un maestro stanco|La piccola barca|Il nostro nuovo vicino"
          "|Il medico del paese|Una giovane pittrice|Lo studente silenzioso"
          " / ha portato|ha dipinto|ha riparato|ha descritto|ha trovato|ha guardato|ha preso in prestito|ha pulito"
          " / il pesante tavolo di legno|una lettera dalla città|il cancello rotto del giardino|del pane e del formaggio"
          "|la mappa della costa settentrionale|un ombrello con il manico verde|la chiave della biblioteca"
          " / prima che arrivasse il temporale|dopo il pranzo della domenica|mentre i bambini dormivano"
          "|con grande pazienza|vicino alla vecchia stazione|perché nessun altro voleva farlo|senza dire una parola",
    "pt": "O velho agricultor|A minha irmã mais nova|Um professor cansado|O pequeno barco|O nosso novo vizinho"
          "|O médico da aldeia|Uma jovem pintora|O estudante calado"
          " / levou|pintou|consertou|descreveu|encontrou|olhou para|pediu emprestado|limpou|abriu"
          " / a pesada mesa de madeira|uma carta da cidade|o portão partido do jardim|um pouco de pão e queijo"
          "|o mapa da costa norte|um guarda-chuva com o cabo verde|a chave da biblioteca"
          " / antes de chegar a tempestade|depois do almoço de domingo|enquanto as crianças dormiam"
          "|com muita paciência|perto da velha estação|porque mais ninguém o queria fazer|sem dizer uma palavra",
    "nl": "De oude boer|Mijn jongere zus|Een vermoeide leraar|Het kleine bootje|Onze nieuwe buurman|De dokter van het dorp"
          "|Een jonge schilder|De stille student"
          " / droeg|schilderde|repareerde|beschreef|vond|bekeek|leende|maakte schoon|opende"
          " / de zware houten tafel|een brief uit de stad|het kapotte tuinhek|wat brood en kaas"
          "|de kaart van de noordkust|een paraplu met een groen handvat|de sleutel van de bibliotheek"
          " / voordat het onweer kwam|na de lunch op zondag|terwijl de kinderen sliepen|met veel geduld"
          "|bij het oude station|omdat niemand anders het wilde doen|zonder een woord te zeggen",
    "sv": "Den gamle bonden|Min lillasyster|En trött lärare|Den lilla båten|Vår nya granne|Byns läkare"
          "|En ung målare|Den tystlåtna studenten"
          " / bar|målade|lagade|beskrev|hittade|tittade på|lånade|städade|öppnade"
          " / det tunga träbordet|ett brev från staden|den trasiga trädgårdsgrinden|lite bröd och ost"
          "|kartan över norra kusten|ett paraply med grönt handtag|nyckeln till biblioteket"
          " / innan ovädret kom|efter lunchen på söndagen|medan barnen sov|med stort tålamod"
          "|nära den gamla järnvägsstationen|eftersom ingen annan ville göra det|utan att säga ett ord",
    "da": "Den gamle landmand|Min lillesøster|En træt lærer|Den lille båd|Vores nye nabo|Landsbyens læge"
          "|En ung maler|Den stille studerende"
          " / bar|malede|reparerede|beskrev|fandt|kiggede på|lånte|gjorde rent|åbnede"
          " / det tunge træbord|et brev fra byen|den ødelagte havelåge|noget brød og ost"
          "|kortet over nordkysten|en paraply med et grønt håndtag|nøglen til biblioteket"
          " / før uvejret kom|efter frokosten om søndagen|mens børnene sov|med stor tålmodighed"
          "|nær den gamle banegård|fordi ingen andre ville gøre det|uden at sige et ord",
    "nb": "Den gamle bonden|Lillesøsteren min|En sliten lærer|Den lille båten|Vår nye nabo|Legen i bygda"
          "|En ung maler|Den stille studenten"
          " / bar|malte|reparerte|beskrev|fant|så på|lånte|vasket|åpnet"
          " / det tunge trebordet|et brev fra byen|den ødelagte hagegrinda|litt brød og ost"
          "|kartet over nordkysten|en paraply med grønt håndtak|nøkkelen til biblioteket"
          " / før uværet kom|etter lunsjen på søndag|mens barna sov|med stor tålmodighet"
          "|i nærheten av den gamle jernbanestasjonen|fordi ingen andre ville gjøre det|uten å si et ord",
    "ru": "Старый фермер|Моя младшая сестра|Уставший учитель|Маленькая лодка|Наш новый сосед|Сельский врач"
          "|Молодая художница|Тихий студент"
          " / принёс|покрасил|починил|описал|нашёл|рассматривал|одолжил|почистил|открыл"
          " / тяжёлый деревянный стол|письмо из города|сломанную калитку сада|немного хлеба и сыра"
          "|карту северного побережья|зонт с зелёной ручкой|ключ от библиотеки"
          " / перед самой грозой|после обеда в воскресенье|пока дети спали|с большим терпением"
          "|возле старого вокзала|потому что никто другой не хотел|не говоря ни слова",
    "el": "Ο γέρος αγρότης|Η μικρή μου αδελφή|Ένας κουρασμένος δάσκαλος|Η μικρή βάρκα|Ο νέος μας γείτονας"
          "|Ο γιατρός του χωριού"
          " / κουβάλησε|έβαψε|επισκεύασε|περιέγραψε|βρήκε|κοίταξε"
          " / το βαρύ ξύλινο τραπέζι|ένα γράμμα από την πόλη|την σπασμένη πόρτα του κήπου|λίγο ψωμί και τυρί"
          "|τον χάρτη της βόρειας ακτής"
          " / πριν έρθει η καταιγίδα|μετά το μεσημεριανό της Κυριακής|ενώ τα παιδιά κοιμόντουσαν"
          "|με μεγάλη υπομονή|κοντά στον παλιό σταθμό",
    "ar": "المزارع العجوز|أختي الصغيرة|المعلم المتعب|القارب الصغير|جارنا الجديد|طبيب القرية"
          " / حمل|دهن|أصلح|وصف|وجد|شاهد"
          " / الطاولة الخشبية الثقيلة|رسالة من المدينة|باب الحديقة المكسور|بعض الخبز والجبن|خريطة الساحل الشمالي"
          " / قبل وصول العاصفة|بعد الغداء يوم الأحد|بينما كان الأطفال نائمين|بصبر كبير|قرب المحطة القديمة",
    "he": "האיכר הזקן|אחותי הקטנה|המורה העייף|הסירה הקטנה|השכן החדש שלנו|רופא הכפר"
          " / נשא|צבע|תיקן|תיאר|מצא|הסתכל על"
          " / את השולחן הכבד מעץ|מכתב מהעיר|את שער הגינה השבור|קצת לחם וגבינה|את המפה של החוף הצפוני"
          " / לפני שהגיעה הסערה|אחרי ארוחת הצהריים ביום ראשון|בזמן שהילדים ישנו|בסבלנות רבה|ליד התחנה הישנה",
    "hi": "बूढ़े किसान ने|मेरी छोटी बहन ने|थके हुए शिक्षक ने|हमारे नए पड़ोसी ने|गाँव के डॉक्टर ने|एक युवा चित्रकार ने"
          " / शहर से आया पत्र|लकड़ी की भारी मेज़|बगीचे का टूटा दरवाज़ा|थोड़ी रोटी और पनीर|उत्तरी तट का नक्शा"
          " / तूफ़ान आने से पहले|रविवार को दोपहर के खाने के बाद|जब बच्चे सो रहे थे|बड़े धैर्य के साथ|पुराने स्टेशन के पास"
          " / उठाया|ठीक किया|देखा|खोला|साफ़ किया|ढूँढ लिया",
    "ko": "늙은 농부가|내 여동생이|피곤한 선생님이|우리 새 이웃이|마을 의사가|젊은 화가가"
          " / 무거운 나무 탁자를|도시에서 온 편지를|부서진 정원 문을|빵과 치즈를 조금|북쪽 해안의 지도를"
          " / 폭풍이 오기 전에|일요일 점심 후에|아이들이 자는 동안|아주 참을성 있게|오래된 역 근처에서"
          " / 옮겼다|고쳤다|찾았다|열었다|청소했다|바라보았다",
    "zh": "那位老农夫|我的小妹妹|一位疲倦的老师|我们的新邻居|村里的医生|年轻的画家|安静的学生|船长"
          " / 在暴风雨来临之前|星期天午饭以后|趁孩子们睡觉的时候|非常耐心地|在老火车站附近|一句话也没说就"
          " / 搬走了|修好了|仔细描述了|找到了|打开了|打扫了|借走了"
          " / 那张沉重的木桌|城里寄来的信|花园里坏掉的门|一些面包和奶酪|北方海岸的地图|图书馆的钥匙",
    "ja": "年老いた農夫は|私の妹は|疲れた先生は|新しい隣人は|村の医者は|若い画家は|静かな学生は"
          " / 嵐が来る前に|日曜日の昼食の後で|子供たちが寝ている間に|とても辛抱強く|古い駅の近くで|何も言わずに"
          " / 重い木のテーブルを|町から届いた手紙を|壊れた庭の門を|パンとチーズを少し|北の海岸の地図を|図書館の鍵を"
          " / 運びました|直しました|見つけました|開けました|掃除しました|借りました",
    "th": "ชาวนาแก่|น้องสาวของฉัน|ครูที่เหนื่อยล้า|เพื่อนบ้านใหม่ของเรา|หมอประจำหมู่บ้าน|จิตรกรหนุ่ม"
          " / ได้ยก|ได้ซ่อม|ได้พบ|ได้เปิด|ได้ทำความสะอาด|ได้มองดู"
          " / โต๊ะไม้ที่หนัก|จดหมายจากในเมือง|ประตูสวนที่พัง|ขนมปังกับเนยแข็ง|แผนที่ชายฝั่งทางเหนือ"
          " / ก่อนพายุจะมา|หลังอาหารกลางวันวันอาทิตย์|ในขณะที่เด็กๆ กำลังนอนหลับ|ด้วยความอดทน|ใกล้สถานีรถไฟเก่า",
}
# Scripts written without spaces between words, and how their sentences end.
_NO_SPACES = {"zh", "ja"}
_END = {"zh": "。", "ja": "。", "th": "", "hi": "।", "ar": ".", "he": "."}
LANGS = sorted(_GRAMMARS)
GRAMMARS = {lang: [slot.split("|") for slot in g.split(" / ")] for lang, g in _GRAMMARS.items()}


def sentence(rng: random.Random, lang: str) -> str:
    parts = [rng.choice(slot) for slot in GRAMMARS[lang]]
    text = ("" if lang in _NO_SPACES else " ").join(parts)
    return text + _END.get(lang, ".")


def sentences(lang: str, n: int, seed: int = 0) -> list[str]:
    """n distinct sentences of `lang` (a language with few phrases gives fewer, never a repeat)."""
    rng = random.Random(f"{lang}-{seed}")
    out, seen = [], set()
    total = 1
    for slot in GRAMMARS[lang]:
        total *= len(slot)
    while len(out) < min(n, total):
        s = sentence(rng, lang)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def paragraph(rng: random.Random, lang: str = "en", n: int = 6) -> str:
    return ("" if lang in _NO_SPACES else " ").join(sentence(rng, lang) for _ in range(n))


def article(rng: random.Random, min_words: int, lang: str = "en") -> list[str]:
    """Paragraphs of English (or `lang`) with at least min_words words in all."""
    paras, words = [], 0
    while words < min_words:
        p = paragraph(rng, lang, rng.randint(4, 8))
        paras.append(p)
        words += len(p.split())
    return paras


_HAN = ("春山明月光花水风云雪夜客心归秋声落日长江天白草青红楼远人家故乡独坐空林鸟飞千里万年"
        "孤舟烟雨寒霜叶柳门前路边酒杯清泉石上流来去多少时相思不见君")


def chinese_poems(n: int, seed: int = 0) -> list[dict]:
    """Poems of four 5- or 7-character lines from common literary characters: {title, author, paragraphs}."""
    rng = random.Random(f"poems-{seed}")
    poems = []
    for i in range(n):
        k = rng.choice((5, 7))
        line = lambda: "".join(rng.choice(_HAN) for _ in range(k))
        poems.append({"title": "".join(rng.choice(_HAN) for _ in range(rng.randint(2, 4))),
                      "author": "".join(rng.choice(_HAN) for _ in range(rng.randint(2, 3))),
                      "paragraphs": [f"{line()}，{line()}。", f"{line()}，{line()}。"]})
    return poems
