"""Seeded generated text in many languages, for tests that must run without ../shared.

Each language has a tiny phrase grammar (subject / verb / object / ending, a handful of
real phrases in each slot, written for these tests): a sentence picks one phrase per slot,
so a few dozen phrases give thousands of distinct, grammatical-looking sentences in the
language's own script, stop words and letter statistics. Everything takes a seed:
the same call gives the same text on every machine.
"""
from __future__ import annotations

import random

# lang: slots separated by " / ", alternatives by "|" (a slot of one alternative is a fixed
# word). Words are short and slots many, so sentences rarely share a run of five words:
# documents made of them pass the Gopher repetition rules as real prose does.
_GRAMMARS = {
    "en": "The|A|My|Our|That|Every|One|Their|His|Her"
          " / old|young|quiet|tired|clever|busy|patient|curious|gentle|nervous|cheerful|stubborn|honest|careful|famous"
          " / farmer|teacher|sailor|painter|doctor|student|baker|neighbour|captain|gardener|writer|nurse|miller|merchant"
          " / carried|painted|repaired|described|found|watched|borrowed|cleaned|opened|remembered|sold|bought|noticed|wrapped"
          " / the|a|her|his|their|our|some|that|this"
          " / heavy|broken|wooden|green|narrow|ancient|empty|shiny|dusty|tiny|huge|warm|strange|little"
          " / table|letter|gate|basket|map|umbrella|key|lantern|boat|bridge|window|blanket|kettle|ladder|bicycle|clock"
          " / near|behind|beside|under|inside|across|beyond|outside|past|along / the"
          " / river|station|library|market|harbour|church|school|forest|bakery|village|square|garden|orchard|mill"
          " / yesterday|at dawn|before dinner|in the rain|last winter|on Monday|after the storm|every morning"
          "|without a word|with great care|for a while|again|once more|at noon"
          " / and then went home|to be safe|with a friend|of course|and smiled|to help the others|with the children"
          "|and that was all|to the end|of the whole family|and left it there|with no help at all",
    "de": "Der|Ein|Mein|Unser|Jener|Dieser|Sein|Ihr"
          " / alte|junge|stille|müde|kluge|fleißige|geduldige|neugierige|freundliche|nervöse|ehrliche|berühmte"
          " / Bauer|Lehrer|Seemann|Maler|Arzt|Student|Bäcker|Nachbar|Kapitän|Gärtner|Schreiber|Müller|Händler"
          " / trug|malte|reparierte|beschrieb|fand|beobachtete|putzte|öffnete|verkaufte|kaufte|bemerkte|suchte"
          " / den|einen|seinen|ihren|unseren|jenen|diesen"
          " / schweren|kaputten|hölzernen|grünen|schmalen|alten|leeren|glänzenden|staubigen|kleinen|großen|warmen"
          " / Tisch|Brief|Korb|Schlüssel|Schirm|Kessel|Stuhl|Mantel|Eimer|Teppich|Spiegel|Wagen|Koffer"
          " / neben dem|hinter dem|unter dem|vor dem|in dem|an dem|bei dem"
          " / Fluss|Bahnhof|Markt|Hafen|Garten|Wald|Platz|Turm|Brunnen|Keller|Laden|Zaun"
          " / gestern|am Morgen|vor dem Essen|im Regen|letzten Winter|am Montag|nach dem Sturm|jeden Tag|ohne ein Wort"
          "|mit großer Sorgfalt|noch einmal|am Abend|und ging dann nach Hause",
    "fr": "Le|Un|Mon|Notre|Ce|Son|Leur"
          " / vieux|jeune|calme|fatigué|petit|grand|curieux|patient|gentil|honnête|célèbre|nouveau"
          " / fermier|professeur|marin|peintre|médecin|étudiant|boulanger|voisin|capitaine|jardinier|écrivain|meunier"
          " / a porté|a peint|a réparé|a décrit|a trouvé|a regardé|a nettoyé|a ouvert|a vendu|a acheté|a remarqué|a cherché"
          " / le|un|son|leur|notre|ce|mon"
          " / lourd|vieux|petit|grand|beau|joli|long|vrai|gros|mauvais|bon|nouveau"
          " / panier|parapluie|tableau|bateau|manteau|fauteuil|miroir|seau|chapeau|tapis|vélo|couteau"
          " / près de la|derrière la|devant la|dans la|sous la|à côté de la|loin de la"
          " / rivière|gare|bibliothèque|place|maison|forêt|boulangerie|église|école|fontaine|cuisine|grange"
          " / hier|à l'aube|avant le dîner|sous la pluie|l'hiver dernier|lundi|après l'orage|chaque matin"
          "|sans dire un mot|avec beaucoup de soin|encore une fois|le soir|puis il est rentré chez lui",
    "es": "El|Un|Mi|Nuestro|Ese|Este|Su"
          " / viejo|joven|tranquilo|cansado|pequeño|famoso|curioso|paciente|amable|honesto|nuevo|buen"
          " / granjero|maestro|marinero|pintor|médico|estudiante|panadero|vecino|capitán|jardinero|escritor|molinero"
          " / llevó|pintó|reparó|describió|encontró|miró|limpió|abrió|vendió|compró|notó|buscó"
          " / el|un|su|nuestro|ese|este|aquel"
          " / pesado|viejo|pequeño|largo|bonito|roto|nuevo|oscuro|blanco|grande|vacío|antiguo"
          " / cesto|paraguas|cuadro|barco|abrigo|sillón|espejo|cubo|sombrero|tapete|reloj|cuchillo"
          " / cerca de la|detrás de la|delante de la|dentro de la|bajo la|junto a la|lejos de la"
          " / estación|biblioteca|plaza|casa|iglesia|escuela|fuente|cocina|panadería|granja|playa|tienda"
          " / ayer|al amanecer|antes de la cena|bajo la lluvia|el invierno pasado|el lunes|después de la tormenta"
          "|cada mañana|sin decir nada|con mucho cuidado|otra vez|por la tarde|y luego volvió a casa",
    "it": "Il|Un|Mio|Nostro|Quel|Questo|Suo"
          " / vecchio|giovane|tranquillo|stanco|piccolo|famoso|curioso|paziente|gentile|onesto|nuovo|bravo"
          " / contadino|maestro|marinaio|pittore|medico|studente|fornaio|vicino|capitano|giardiniere|scrittore|mugnaio"
          " / ha portato|ha dipinto|ha riparato|ha descritto|ha trovato|ha guardato|ha pulito|ha aperto|ha venduto"
          "|ha comprato|ha notato|ha cercato"
          " / il|un|suo|nostro|quel|questo|mio"
          " / pesante|vecchio|piccolo|lungo|bello|rotto|nuovo|scuro|bianco|grande|vuoto|antico"
          " / cesto|ombrello|quadro|cappotto|specchio|secchio|cappello|tappeto|orologio|coltello|cassetto|baule"
          " / vicino alla|dietro la|davanti alla|dentro la|sotto la|accanto alla|lontano dalla"
          " / stazione|biblioteca|piazza|casa|chiesa|scuola|fontana|cucina|fattoria|spiaggia|bottega|torre"
          " / ieri|all'alba|prima di cena|sotto la pioggia|lo scorso inverno|lunedì|dopo il temporale|ogni mattina"
          "|senza dire niente|con molta cura|ancora una volta|la sera|e poi è tornato a casa",
    "pt": "O|Um|Meu|Nosso|Esse|Este|Seu"
          " / velho|jovem|calmo|cansado|pequeno|famoso|curioso|paciente|gentil|honesto|novo|bom"
          " / agricultor|professor|marinheiro|pintor|médico|estudante|padeiro|vizinho|capitão|jardineiro|escritor|moleiro"
          " / levou|pintou|consertou|descreveu|encontrou|olhou|limpou|abriu|vendeu|comprou|notou|procurou"
          " / o|um|seu|nosso|esse|este|aquele"
          " / pesado|velho|pequeno|comprido|bonito|partido|novo|escuro|branco|grande|vazio|antigo"
          " / cesto|guarda-chuva|quadro|barco|casaco|espelho|balde|chapéu|tapete|relógio|canivete|baú"
          " / perto da|atrás da|em frente da|dentro da|debaixo da|ao lado da|longe da"
          " / estação|biblioteca|praça|casa|igreja|escola|fonte|cozinha|padaria|quinta|praia|loja"
          " / ontem|de madrugada|antes do jantar|à chuva|no inverno passado|na segunda-feira|depois da tempestade"
          "|todas as manhãs|sem dizer nada|com muito cuidado|outra vez|à tarde|e depois voltou para casa",
    "nl": "De|Een|Mijn|Onze|Die|Deze|Zijn|Haar"
          " / oude|jonge|stille|moede|slimme|drukke|geduldige|nieuwsgierige|vriendelijke|eerlijke|beroemde|nieuwe"
          " / boer|leraar|zeeman|schilder|dokter|student|bakker|buurman|kapitein|tuinman|schrijver|molenaar"
          " / droeg|schilderde|repareerde|beschreef|vond|bekeek|poetste|opende|verkocht|kocht|zag|zocht"
          " / de|een|zijn|haar|onze|die|deze"
          " / zware|kapotte|houten|groene|smalle|oude|lege|glimmende|stoffige|kleine|grote|warme"
          " / tafel|brief|mand|sleutel|paraplu|ketel|stoel|jas|emmer|spiegel|kist|fiets"
          " / naast het|achter het|onder het|voor het|in het|bij het|tegenover het"
          " / station|dorp|huis|bos|plein|kasteel|museum|café|park|water|veld|hek"
          " / gisteren|bij zonsopgang|voor het eten|in de regen|vorige winter|op maandag|na de storm|elke ochtend"
          "|zonder een woord|met grote zorg|nog een keer|'s avonds|en ging daarna naar huis",
    "sv": "Den|En|Min|Vår|Hans|Hennes|Deras"
          " / gamle|unge|tyste|trötte|kloke|flitige|tålmodige|nyfikne|vänlige|ärlige|kände|nye"
          " / bonden|läraren|sjömannen|målaren|läkaren|studenten|bagaren|grannen|kaptenen|trädgårdsmästaren|författaren"
          " / bar|målade|lagade|beskrev|hittade|tittade på|städade|öppnade|sålde|köpte|märkte|letade efter"
          " / det|ett|sitt|hennes|vårt|deras"
          " / tunga|trasiga|gröna|smala|gamla|tomma|blanka|dammiga|lilla|stora|varma|konstiga"
          " / bordet|brevet|fönstret|paraplyet|huset|skåpet|täcket|spelet|båtens roder|ljuset|kortet"
          " / vid|bakom|under|framför|i|bredvid|nära"
          " / älven|stationen|biblioteket|torget|kyrkan|skolan|skogen|bageriet|byn|trädgården|kvarnen|hamnen"
          " / igår|i gryningen|före middagen|i regnet|förra vintern|på måndagen|efter stormen|varje morgon"
          "|utan att säga något|med stor omsorg|en gång till|på kvällen|och gick sedan hem",
    "da": "Den|En|Min|Vores|Hans|Hendes|Deres"
          " / gamle|unge|stille|trætte|kloge|flittige|tålmodige|nysgerrige|venlige|ærlige|kendte|nye"
          " / landmand|lærer|sømand|maler|læge|studerende|bager|nabo|kaptajn|gartner|forfatter|møller"
          " / bar|malede|reparerede|beskrev|fandt|kiggede på|gjorde rent|åbnede|solgte|købte|bemærkede|ledte efter"
          " / det|et|sit|hendes|vores|deres"
          " / tunge|ødelagte|grønne|smalle|gamle|tomme|blanke|støvede|lille|store|varme|mærkelige"
          " / bord|brev|vindue|paraply|hus|skab|tæppe|spil|lys|kort|spejl|cykelhjul"
          " / ved|bag|under|foran|i|ved siden af|nær"
          " / åen|banegården|biblioteket|torvet|kirken|skolen|skoven|bageriet|landsbyen|haven|møllen|havnen"
          " / i går|ved daggry|før aftensmaden|i regnvejret|sidste vinter|om mandagen|efter stormen|hver morgen"
          "|uden at sige noget|med stor omhu|en gang til|om aftenen|og gik derefter hjem",
    "nb": "Den|En|Min|Vår|Hans|Hennes|Deres"
          " / gamle|unge|stille|slitne|kloke|flittige|tålmodige|nysgjerrige|vennlige|ærlige|kjente|nye"
          " / bonden|læreren|sjømannen|maleren|legen|studenten|bakeren|naboen|kapteinen|gartneren|forfatteren|mølleren"
          " / bar|malte|reparerte|beskrev|fant|så på|vasket|åpnet|solgte|kjøpte|la merke til|lette etter"
          " / det|et|sitt|hennes|vårt|deres"
          " / tunge|ødelagte|grønne|smale|gamle|tomme|blanke|støvete|lille|store|varme|rare"
          " / bordet|brevet|vinduet|paraplyet|huset|skapet|teppet|spillet|lyset|kartet|speilet|sykkelhjulet"
          " / ved|bak|under|foran|i|ved siden av|nær"
          " / elva|jernbanestasjonen|biblioteket|torget|kirka|skolen|skogen|bakeriet|bygda|hagen|mølla|havna"
          " / i går|ved daggry|før middag|i regnet|i fjor vinter|på mandag|etter stormen|hver morgen"
          "|uten å si noe|med stor omhu|en gang til|om kvelden|og gikk så hjem",
    "ru": "Старый|Молодой|Тихий|Усталый|Умный|Добрый|Честный|Известный|Весёлый|Новый"
          " / фермер|учитель|моряк|художник|врач|студент|пекарь|сосед|капитан|садовник|писатель|мельник"
          " / принёс|покрасил|починил|описал|нашёл|осмотрел|почистил|открыл|продал|купил|заметил|искал"
          " / тяжёлый|сломанный|деревянный|зелёный|узкий|древний|пустой|блестящий|пыльный|маленький|огромный|тёплый"
          " / стол|ящик|ключ|зонт|фонарь|мост|чайник|стул|шкаф|велосипед|сундук|ковёр"
          " / возле|около|у|напротив|за пределами"
          " / реки|станции|библиотеки|площади|церкви|школы|рощи|пекарни|деревни|мельницы|гавани|фабрики"
          " / вчера|на рассвете|перед ужином|под дождём|прошлой зимой|в понедельник|после грозы|каждое утро"
          "|не говоря ни слова|с большой осторожностью|ещё раз|вечером|а потом пошёл домой",
    "el": "Ο|Ένας / γέρος|νέος|ήσυχος|κουρασμένος|έξυπνος|καλός|τίμιος|διάσημος"
          " / αγρότης|δάσκαλος|ναύτης|ζωγράφος|γιατρός|φοιτητής|φούρναρης|γείτονας|καπετάνιος"
          " / κουβάλησε|έβαψε|επισκεύασε|περιέγραψε|βρήκε|κοίταξε|καθάρισε|άνοιξε|πούλησε|αγόρασε"
          " / το / βαρύ|σπασμένο|ξύλινο|πράσινο|στενό|αρχαίο|άδειο|μικρό|μεγάλο"
          " / τραπέζι|γράμμα|καλάθι|κλειδί|φανάρι|καράβι|παράθυρο|ρολόι|ποδήλατο"
          " / κοντά στο|πίσω από το|μέσα στο|δίπλα στο / ποτάμι|σχολείο|δάσος|χωριό|λιμάνι|σπίτι|πάρκο"
          " / χθες|την αυγή|πριν το δείπνο|στη βροχή|τον περασμένο χειμώνα|τη Δευτέρα|μετά την καταιγίδα|κάθε πρωί",
    "ar": "المزارع|المعلم|البحار|الرسام|الطبيب|الطالب|الخباز|الجار|القبطان|البستاني"
          " / العجوز|الشاب|الهادئ|المتعب|الذكي|الطيب|الأمين|المشهور"
          " / حمل|دهن|أصلح|وصف|وجد|شاهد|نظف|فتح|باع|اشترى"
          " / الصندوق|الكرسي|المفتاح|الباب|المصباح|القارب|الجسر|الشباك|الإبريق|السلم"
          " / الثقيل|المكسور|الخشبي|الأخضر|الضيق|القديم|الفارغ|الصغير|الكبير"
          " / قرب|خلف|تحت|أمام|داخل|بجانب"
          " / النهر|المحطة|المكتبة|السوق|الميناء|المدرسة|الغابة|القرية|الحديقة"
          " / أمس|عند الفجر|قبل العشاء|تحت المطر|في الشتاء الماضي|يوم الاثنين|بعد العاصفة|كل صباح",
    "he": "האיכר|המורה|המלח|הצייר|הרופא|הסטודנט|האופה|השכן|הקפטן|הגנן"
          " / הזקן|הצעיר|השקט|העייף|החכם|הטוב|הישר|המפורסם"
          " / נשא|צבע|תיקן|תיאר|מצא|ראה|ניקה|פתח|מכר|קנה"
          " / את / השולחן|המכתב|הסל|המפתח|הפנס|הגשר|החלון|השעון|האופניים|הסולם"
          " / הכבד|השבור|הירוק|הצר|הישן|הריק|הקטן|הגדול"
          " / ליד|מאחורי|מתחת ל|מול|בתוך / הנהר|התחנה|הספרייה|השוק|הנמל|בית הספר|היער|הכפר|הגן"
          " / אתמול|עם שחר|לפני ארוחת הערב|בגשם|בחורף שעבר|ביום שני|אחרי הסערה|כל בוקר",
    "hi": "बूढ़े|युवा|शांत|थके हुए|चतुर|मेहनती|ईमानदार|मशहूर"
          " / किसान|शिक्षक|नाविक|चित्रकार|डॉक्टर|छात्र|नानबाई|पड़ोसी|कप्तान|माली / ने"
          " / भारी|टूटी|लकड़ी की|हरी|पुरानी|खाली|छोटी|बड़ी"
          " / मेज़|चिट्ठी|टोकरी|चाबी|छतरी|लालटेन|नाव|खिड़की|घड़ी|सीढ़ी"
          " / नदी के पास|स्टेशन के पीछे|पुस्तकालय में|बाज़ार में|मंदिर के सामने|स्कूल के पास|जंगल में|गाँव में"
          " / कल|सुबह-सुबह|रात के खाने से पहले|बारिश में|पिछली सर्दी में|सोमवार को|तूफ़ान के बाद|हर सुबह"
          " / उठाई|ठीक की|देखी|खोली|साफ़ की|ढूँढी|बेची|खरीदी",
    "ko": "늙은|젊은|조용한|피곤한|영리한|부지런한|정직한|유명한"
          " / 농부가|선생님이|선원이|화가가|의사가|학생이|제빵사가|이웃이|선장이|정원사가"
          " / 어제|새벽에|저녁 식사 전에|빗속에서|지난 겨울에|월요일에|폭풍이 지나간 후에|매일 아침"
          " / 강가에서|역 뒤에서|도서관에서|시장에서|항구에서|학교 근처에서|숲에서|마을에서"
          " / 무거운|부서진|나무로 된|초록색|낡은|빈|작은|커다란"
          " / 탁자를|편지를|바구니를|열쇠를|우산을|등불을|배를|창문을|시계를|사다리를"
          " / 옮겼다|고쳤다|찾았다|열었다|청소했다|바라보았다|팔았다|샀다",
    "zh": "那位|这位|一位|有位|两位"
          " / 老|年轻的|安静的|疲倦的|聪明的|勤劳的|诚实的|有名的|胖胖的|瘦高的"
          " / 农夫|老师|水手|画家|医生|学生|厨师|邻居|船长|园丁|作家|工人|商人|司机"
          " / 昨天|清晨|晚上|去年|上周|刚才|后来|今天|前天|午后|半夜|早上 / 在"
          " / 河|车站|图书馆|市场|港口|学校|森林|村子|花园|广场|医院|山|桥 / 边|里|上|旁|外|后面|附近"
          " / 搬走了|修好了|找到了|打开了|打扫了|看见了|卖掉了|买下了|借走了|画出了|擦亮了"
          " / 一张|一封|一只|那把|这个|一盏|几个|两件"
          " / 沉重的|破旧的|木头|绿色的|狭窄的|空空的|小小的|巨大的|新的|漂亮的"
          " / 桌子|信|篮子|钥匙|雨伞|灯笼|小船|窗户|钟|梯子|衣服|椅子",
    "ja": "年老いた|若い|静かな|疲れた|賢い|働き者の|正直な|有名な|背の高い|陽気な"
          " / 農夫|先生|船乗り|画家|医者|学生|パン屋|隣人|船長|庭師|作家|商人 / は|も"
          " / 昨日|夜明けに|夕方|去年の冬に|月曜日に|嵐の後|毎朝|先週|今朝|夜中に|昼過ぎ|先月|おととい|日曜の午後"
          "|雨の日に|正午に|春に|秋の朝"
          " / 川|駅|図書館|市場|港|学校|森|村|橋|庭|寺|公園|畑|浜辺|店 / で|のそばで|の前で|の裏で|の近くで|の中で|の横で|の上で"
          " / 重い|壊れた|木の|緑の|古い|空っぽの|小さな|大きな|新しい|きれいな"
          " / テーブル|手紙|かご|鍵|傘|ランプ|舟|窓|時計|はしご|椅子|帽子 / を|も"
          " / 運んだ|直した|見た|開けた|売った|買った|借りた|拾った|磨いた|洗った|描いた|探した|捨てた|作った"
          "|運ぶ|直す|開ける|売る|買う|洗う",
    "th": "ชาวนา|ครู|กะลาสี|จิตรกร|หมอ|นักเรียน|คนทำขนมปัง|เพื่อนบ้าน|กัปตัน|คนสวน"
          " / แก่|หนุ่ม|เงียบ|เหนื่อย|ฉลาด|ขยัน|ซื่อสัตย์|มีชื่อเสียง"
          " / ได้ยก|ได้ซ่อม|ได้พบ|ได้เปิด|ได้ทำความสะอาด|ได้มองดู|ได้ขาย|ได้ซื้อ"
          " / โต๊ะ|จดหมาย|ตะกร้า|กุญแจ|ร่ม|ตะเกียง|เรือ|หน้าต่าง|นาฬิกา|บันได"
          " / ที่หนัก|ที่พัง|ที่ทำจากไม้|สีเขียว|ที่เก่า|ที่ว่างเปล่า|ใบเล็ก|ใบใหญ่"
          " / ใกล้แม่น้ำ|หลังสถานี|ในห้องสมุด|ในตลาด|ที่ท่าเรือ|ใกล้โรงเรียน|ในป่า|ในหมู่บ้าน"
          " / เมื่อวาน|ตอนรุ่งเช้า|ก่อนอาหารเย็น|กลางสายฝน|เมื่อฤดูหนาวที่แล้ว|วันจันทร์|หลังพายุ|ทุกเช้า",
}
# Scripts written without spaces between words, and how their sentences end.
_NO_SPACES = {"zh", "ja", "th"}
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
    return ("" if lang in ("zh", "ja") else " ").join(sentence(rng, lang) for _ in range(n))


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


def wiki_paragraph(rng: random.Random, n: int) -> str:
    """English sentences tokenized the WikiText way: spaced punctuation, " @-@ ", " @,@ ", " 's"."""
    out = []
    for _ in range(n):
        words = sentence(rng, "en")[:-1].split(" ")
        if rng.random() < 0.7:
            words.insert(rng.randint(3, len(words) - 1), ",")
        if rng.random() < 0.5:
            words += ["in", str(rng.randint(1, 9)), "@,@", f"{rng.randint(0, 999):03d}", "years"]
        if rng.random() < 0.5:
            k = rng.randint(1, len(words) - 1)
            words[k:k] = [rng.choice(["well", "long", "short", "high"]), "@-@", rng.choice(["known", "lived", "term", "level"])]
        if rng.random() < 0.3:
            words.insert(1, "'s")
        out.append(" ".join(words) + " .")
    return " ".join(out)
