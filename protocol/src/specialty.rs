//! The built-in catalogue of consultation specialties.
//!
//! A consultation request is routed by specialty, and hospitals on the network
//! run different software in different languages, so a specialty travels as a
//! small number that never changes meaning. Names are for people only; the
//! SNOMED CT concept lets a hospital map our codes onto its own EHR (FHIR
//! `PractitionerRole.specialty`, `c80-practice-codes`) without a lookup table
//! of its own.

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Language of a human-readable name. The set follows the hospitals on the
/// network, not a general i18n scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Ru,
    Uk,
    Zh,
}

impl Lang {
    /// In the column order of the catalogue's name arrays.
    const ALL: [Lang; 4] = [Lang::En, Lang::Ru, Lang::Uk, Lang::Zh];

    fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
            Lang::Uk => "uk",
            Lang::Zh => "zh",
        }
    }

    fn column(self) -> usize {
        match self {
            Lang::En => 0,
            Lang::Ru => 1,
            Lang::Uk => 2,
            Lang::Zh => 3,
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {0:?}: expected one of en, ru, uk, zh")]
pub struct UnknownLang(pub String);

impl FromStr for Lang {
    type Err = UnknownLang;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lang::ALL
            .into_iter()
            .find(|lang| lang.tag().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLang(s.to_owned()))
    }
}

/// One catalogue entry. Private so the table stays the only place a fact is
/// written.
struct Row {
    specialty: Specialty,
    slug: &'static str,
    snomed: Option<&'static str>,
    /// Indexed by [`Lang::column`].
    names: [&'static str; 4],
}

/// Generates the enum and its table from one list, so a variant cannot exist
/// without a row (and vice versa).
macro_rules! catalogue {
    ($(
        $code:literal $variant:ident $slug:literal $snomed:expr,
            [$en:literal, $ru:literal, $uk:literal, $zh:literal];
    )*) => {
        /// A consultation specialty.
        ///
        /// The discriminant is the wire code: it is what peers store and send,
        /// so a code is never renumbered or reused. A retired specialty keeps
        /// its variant and row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Specialty {
            $($variant = $code,)*
        }

        const CATALOGUE: &[Row] = &[
            $(Row {
                specialty: Specialty::$variant,
                slug: $slug,
                snomed: $snomed,
                names: [$en, $ru, $uk, $zh],
            },)*
        ];
    };
}

// SNOMED CT ids are "clinical specialty" concepts (descendants of 394658006).
// Where the FHIR R4 `c80-practice-codes` value set lists a fitting concept we
// use that one, so FHIR systems accept it as-is; otherwise (neonatology,
// pediatrics, thoracic surgery, pathology, allergy and immunology, emergency
// medicine, pediatric neurology) the closer SNOMED concept outside that list.
// Phthisiology has no specialty concept in SNOMED CT.
catalogue! {
    1 Oncology "oncology" Some("394592004"),
        ["Oncology", "Онкология", "Онкологія", "肿瘤科"];
    2 Cardiology "cardiology" Some("394579002"),
        ["Cardiology", "Кардиология", "Кардіологія", "心血管内科"];
    3 Neonatology "neonatology" Some("408445005"),
        ["Neonatology", "Неонатология", "Неонатологія", "新生儿科"];
    4 Urology "urology" Some("394612005"),
        ["Urology", "Урология", "Урологія", "泌尿外科"];
    5 VascularSurgery "vascular-surgery" Some("408463005"),
        ["Vascular surgery", "Сосудистая хирургия", "Судинна хірургія", "血管外科"];
    6 Rheumatology "rheumatology" Some("394810000"),
        ["Rheumatology", "Ревматология", "Ревматологія", "风湿免疫科"];
    7 Neurology "neurology" Some("394591006"),
        ["Neurology", "Неврология", "Неврологія", "神经内科"];
    8 MaxillofacialSurgery "maxillofacial-surgery" Some("408465003"),
        ["Maxillofacial surgery", "Челюстно-лицевая хирургия", "Щелепно-лицева хірургія",
         "口腔颌面外科"];
    9 Pediatrics "pediatrics" Some("394537008"),
        ["Pediatrics", "Педиатрия", "Педіатрія", "儿科"];
    10 Radiology "radiology" Some("394914008"),
        ["Radiology", "Лучевая диагностика", "Променева діагностика", "放射科"];
    11 CardiacSurgery "cardiac-surgery" Some("408466002"),
        ["Cardiac surgery", "Кардиохирургия", "Кардіохірургія", "心脏外科"];
    12 Neurosurgery "neurosurgery" Some("394610002"),
        ["Neurosurgery", "Нейрохирургия", "Нейрохірургія", "神经外科"];
    13 ThoracicSurgery "thoracic-surgery" Some("408456005"),
        ["Thoracic surgery", "Торакальная хирургия", "Торакальна хірургія", "胸外科"];
    14 GeneralSurgery "general-surgery" Some("394609007"),
        ["General surgery", "Общая хирургия", "Загальна хірургія", "普通外科"];
    15 PediatricSurgery "pediatric-surgery" Some("394539006"),
        ["Pediatric surgery", "Детская хирургия", "Дитяча хірургія", "小儿外科"];
    16 TraumatologyOrthopedics "traumatology-orthopedics" Some("394801008"),
        ["Traumatology and orthopedics", "Травматология и ортопедия",
         "Ортопедія і травматологія", "骨科"];
    17 ObstetricsGynecology "obstetrics-gynecology" Some("394585009"),
        ["Obstetrics and gynecology", "Акушерство и гинекология", "Акушерство і гінекологія",
         "妇产科"];
    18 Endocrinology "endocrinology" Some("394583002"),
        ["Endocrinology", "Эндокринология", "Ендокринологія", "内分泌科"];
    19 Gastroenterology "gastroenterology" Some("394584008"),
        ["Gastroenterology", "Гастроэнтерология", "Гастроентерологія", "消化内科"];
    20 Nephrology "nephrology" Some("394589003"),
        ["Nephrology", "Нефрология", "Нефрологія", "肾内科"];
    21 Pulmonology "pulmonology" Some("418112009"),
        ["Pulmonology", "Пульмонология", "Пульмонологія", "呼吸内科"];
    22 Hematology "hematology" Some("394803006"),
        ["Hematology", "Гематология", "Гематологія", "血液科"];
    23 InfectiousDiseases "infectious-diseases" Some("394807007"),
        ["Infectious diseases", "Инфекционные болезни", "Інфекційні хвороби", "感染科"];
    24 Dermatology "dermatology" Some("394582007"),
        ["Dermatology", "Дерматовенерология", "Дерматовенерологія", "皮肤科"];
    25 Ophthalmology "ophthalmology" Some("394594003"),
        ["Ophthalmology", "Офтальмология", "Офтальмологія", "眼科"];
    26 Otorhinolaryngology "otorhinolaryngology" Some("418960008"),
        ["Otorhinolaryngology", "Оториноларингология", "Отоларингологія", "耳鼻咽喉科"];
    27 Psychiatry "psychiatry" Some("394587001"),
        ["Psychiatry", "Психиатрия", "Психіатрія", "精神科"];
    28 AnesthesiologyIntensiveCare "anesthesiology-intensive-care" Some("394577000"),
        ["Anesthesiology and intensive care", "Анестезиология-реаниматология",
         "Анестезіологія та інтенсивна терапія", "麻醉与重症医学科"];
    29 ClinicalGenetics "clinical-genetics" Some("394580004"),
        ["Clinical genetics", "Медицинская генетика", "Медична генетика", "医学遗传科"];
    30 NuclearMedicine "nuclear-medicine" Some("394649004"),
        ["Nuclear medicine", "Ядерная медицина", "Ядерна медицина", "核医学科"];
    31 Pathology "pathology" Some("394595002"),
        ["Pathology", "Патологическая анатомия", "Патологічна анатомія", "病理科"];
    32 RehabilitationMedicine "rehabilitation-medicine" Some("394602003"),
        ["Rehabilitation medicine", "Медицинская реабилитация",
         "Фізична та реабілітаційна медицина", "康复医学科"];
    33 Geriatrics "geriatrics" Some("394811001"),
        ["Geriatrics", "Гериатрия", "Геріатрія", "老年医学科"];
    34 AllergyImmunology "allergy-immunology" Some("394805004"),
        ["Allergy and immunology", "Аллергология и иммунология", "Алергологія та імунологія",
         "变态反应科"];
    35 Toxicology "toxicology" Some("409967009"),
        ["Toxicology", "Токсикология", "Токсикологія", "中毒科"];
    36 EmergencyMedicine "emergency-medicine" Some("773568002"),
        ["Emergency medicine", "Скорая медицинская помощь", "Медицина невідкладних станів",
         "急诊科"];
    37 Transplantation "transplantation" Some("408477008"),
        ["Transplantation", "Трансплантология", "Трансплантологія", "器官移植科"];
    38 PediatricOncology "pediatric-oncology" Some("418002000"),
        ["Pediatric oncology", "Детская онкология", "Дитяча онкологія", "小儿肿瘤科"];
    39 PediatricCardiology "pediatric-cardiology" Some("408459003"),
        ["Pediatric cardiology", "Детская кардиология", "Дитяча кардіологія", "小儿心血管内科"];
    40 Phthisiology "phthisiology" None,
        ["Phthisiology (tuberculosis)", "Фтизиатрия", "Фтизіатрія", "结核病科"];
    41 RadiationOncology "radiation-oncology" Some("419815003"),
        ["Radiation oncology", "Радиотерапия", "Променева терапія", "放射治疗科"];
    42 PlasticSurgery "plastic-surgery" Some("394611003"),
        ["Plastic surgery", "Пластическая хирургия", "Пластична хірургія", "整形外科"];
    43 Coloproctology "coloproctology" Some("408464004"),
        ["Coloproctology", "Колопроктология", "Проктологія", "肛肠外科"];
    44 PalliativeMedicine "palliative-medicine" Some("394806003"),
        ["Palliative medicine", "Паллиативная медицина", "Паліативна медицина", "安宁疗护科"];
    45 PediatricNeurology "pediatric-neurology" Some("394538003"),
        ["Pediatric neurology", "Детская неврология", "Дитяча неврологія", "小儿神经内科"];
}

// Row i must hold code i + 1. Checked at compile time so `row()` can index
// without a search and without a panic path.
const _: () = {
    let mut i = 0;
    while i < CATALOGUE.len() {
        assert!(CATALOGUE[i].specialty as usize == i + 1);
        i += 1;
    }
};

const ALL_SPECIALTIES: [Specialty; CATALOGUE.len()] = {
    let mut all = [Specialty::Oncology; CATALOGUE.len()];
    let mut i = 0;
    while i < CATALOGUE.len() {
        all[i] = CATALOGUE[i].specialty;
        i += 1;
    }
    all
};

impl Specialty {
    /// Every specialty, in code order (what `konsilium specialties` lists).
    pub const ALL: &'static [Specialty] = &ALL_SPECIALTIES;

    fn row(self) -> &'static Row {
        &CATALOGUE[usize::from(self.code()) - 1]
    }

    /// Stable wire code. Starts at 1 so that 0 is never a valid specialty,
    /// which catches zeroed or default-initialised fields from peers.
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<Specialty> {
        let index = usize::from(code.checked_sub(1)?);
        CATALOGUE.get(index).map(|row| row.specialty)
    }

    /// Stable spelling for CLI arguments and config files, where a number
    /// would be unreadable and a display name would change with translation.
    pub fn slug(self) -> &'static str {
        self.row().slug
    }

    /// Case-insensitive, because people type slugs by hand.
    pub fn from_slug(slug: &str) -> Option<Specialty> {
        CATALOGUE
            .iter()
            .find(|row| row.slug.eq_ignore_ascii_case(slug))
            .map(|row| row.specialty)
    }

    pub fn name(self, lang: Lang) -> &'static str {
        self.row().names[lang.column()]
    }

    /// SNOMED CT concept id (decimal digits), for export to FHIR/EHR systems.
    pub fn snomed(self) -> Option<&'static str> {
        self.row().snomed
    }
}

impl fmt::Display for Specialty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown specialty {0:?}: expected one of the catalogue slugs such as \"cardiology\" \
     or a numeric code (see `konsilium specialties`)"
)]
pub struct UnknownSpecialty(pub String);

impl FromStr for Specialty {
    type Err = UnknownSpecialty;

    /// Accepts the numeric code too, so a code seen in a log or on the wire can
    /// be pasted back into the CLI.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let by_code = || {
            // Digits only: `u16::from_str` would also take a leading '+'.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok().and_then(Specialty::from_code)
        };
        Specialty::from_slug(s)
            .or_else(by_code)
            .ok_or_else(|| UnknownSpecialty(s.to_owned()))
    }
}

/// On the wire a specialty is its code: two bytes at most in postcard, and a
/// peer with an older catalogue sees an unknown number rather than a string it
/// might half-match.
impl Serialize for Specialty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for Specialty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        Specialty::from_code(code)
            .ok_or_else(|| de::Error::custom(format_args!("unknown specialty code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::IntoDeserializer;
    use std::collections::HashSet;

    #[test]
    fn codes_are_dense_and_in_order() {
        assert!(Specialty::ALL.len() >= 32);
        assert_eq!(Specialty::ALL.len(), CATALOGUE.len());
        for (i, s) in Specialty::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i + 1, "{s:?}");
        }
        let codes: HashSet<u16> = Specialty::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes.len(), Specialty::ALL.len());
    }

    #[test]
    fn slugs_are_unique_lowercase_ascii() {
        let mut seen = HashSet::new();
        for s in Specialty::ALL {
            let slug = s.slug();
            assert!(!slug.is_empty(), "{s:?}");
            assert!(
                slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{slug:?}"
            );
            assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
            assert!(seen.insert(slug), "duplicate slug {slug:?}");
        }
    }

    #[test]
    fn names_are_present_and_distinct_per_language() {
        for lang in Lang::ALL {
            let mut seen = HashSet::new();
            for s in Specialty::ALL {
                let name = s.name(lang);
                assert!(!name.trim().is_empty(), "{s:?} has no {lang} name");
                assert_eq!(name, name.trim(), "{s:?} {lang}");
                assert!(seen.insert(name), "duplicate {lang} name {name:?}");
            }
        }
        assert_eq!(Specialty::Oncology.name(Lang::Ru), "Онкология");
        assert_eq!(Specialty::Phthisiology.name(Lang::Uk), "Фтизіатрія");
        assert_eq!(Specialty::Cardiology.name(Lang::Zh), "心血管内科");
        assert_eq!(Specialty::Cardiology.name(Lang::default()), "Cardiology");
    }

    #[test]
    fn code_and_text_round_trips() {
        for &s in Specialty::ALL {
            assert_eq!(Specialty::from_code(s.code()), Some(s));
            assert_eq!(s.slug().parse(), Ok(s));
            assert_eq!(s.to_string(), s.slug());
            assert_eq!(s.code().to_string().parse(), Ok(s));
            assert_eq!(s.slug().to_ascii_uppercase().parse(), Ok(s));
        }
        assert_eq!("Vascular-Surgery".parse(), Ok(Specialty::VascularSurgery));
        assert_eq!("004".parse(), Ok(Specialty::Urology));
    }

    #[test]
    fn unknown_text_is_rejected_with_the_input() {
        for bad in [
            "",
            "cardio",
            "vascular surgery",
            "0",
            "+2",
            "-1",
            "65536",
            "999",
            " cardiology",
        ] {
            let err = bad.parse::<Specialty>().unwrap_err();
            assert_eq!(err, UnknownSpecialty(bad.to_owned()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(Specialty::from_code(0), None);
        let past_end = u16::try_from(Specialty::ALL.len() + 1).unwrap();
        assert_eq!(Specialty::from_code(past_end), None);
    }

    #[test]
    fn lang_parses_and_displays_its_tag() {
        for lang in Lang::ALL {
            assert_eq!(lang.to_string().parse(), Ok(lang));
            assert_eq!(lang.to_string().to_ascii_uppercase().parse(), Ok(lang));
        }
        assert_eq!("UK".parse(), Ok(Lang::Uk));
        let err = "ua".parse::<Lang>().unwrap_err();
        assert_eq!(err, UnknownLang("ua".to_owned()));
        let msg = err.to_string();
        assert!(
            msg.contains("\"ua\"") && msg.contains("en, ru, uk, zh"),
            "{msg}"
        );
    }

    #[test]
    fn postcard_round_trip() {
        let all = Specialty::ALL.to_vec();
        let bytes = postcard::to_stdvec(&all).unwrap();
        let back: Vec<Specialty> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, all);
        // It is the u16 code on the wire, nothing else.
        assert_eq!(
            postcard::to_stdvec(&Specialty::Radiology).unwrap(),
            postcard::to_stdvec(&10u16).unwrap()
        );
    }

    #[test]
    fn unknown_code_is_a_deserialize_error_naming_it() {
        for code in [0u16, 999, u16::MAX] {
            let bytes = postcard::to_stdvec(&code).unwrap();
            assert!(postcard::from_bytes::<Specialty>(&bytes).is_err());
        }
        // postcard drops custom messages (it has no allocator to keep them), so
        // check the message through a deserializer that keeps it.
        let de = IntoDeserializer::<serde::de::value::Error>::into_deserializer(999u16);
        let err = Specialty::deserialize(de).unwrap_err();
        assert!(
            err.to_string().contains("unknown specialty code 999"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn any_code_maps_to_itself_or_nothing(code in any::<u16>()) {
            match Specialty::from_code(code) {
                Some(s) => prop_assert_eq!(s.code(), code),
                None => prop_assert!(Specialty::ALL.iter().all(|s| s.code() != code)),
            }
        }
    }

    /// Verhoeff dihedral-group multiplication table.
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    /// Verhoeff position permutation; row i is this applied i times.
    const P1: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];

    /// True if the digit string, check digit last, passes Verhoeff.
    fn verhoeff_ok(digits: &str) -> bool {
        let mut check = 0u8;
        for (pos, c) in digits.bytes().rev().enumerate() {
            let mut d = c - b'0';
            for _ in 0..pos % 8 {
                d = P1[usize::from(d)];
            }
            check = D[usize::from(check)][usize::from(d)];
        }
        check == 0
    }

    /// What the SNOMED CT spec requires of a concept id, short of a lookup.
    fn valid_concept_id(id: &str) -> bool {
        (6..=18).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_digit())
            && !id.starts_with('0')
            && matches!(&id[id.len() - 3..id.len() - 1], "00" | "10")
            && verhoeff_ok(id)
    }

    #[test]
    fn verhoeff_matches_known_values() {
        assert!(verhoeff_ok("2363"));
        assert!(!verhoeff_ok("2364"));
        assert!(verhoeff_ok("123451"));
        assert!(valid_concept_id("394658006")); // Clinical specialty
        assert!(valid_concept_id("138875005")); // SNOMED CT root concept
    }

    #[test]
    fn snomed_ids_are_valid_concept_ids() {
        let mut seen = HashSet::new();
        for s in Specialty::ALL {
            if let Some(id) = s.snomed() {
                assert!(
                    valid_concept_id(id),
                    "{s:?}: {id} is not a valid concept id"
                );
                assert!(seen.insert(id), "{s:?}: {id} used twice");
            }
        }
        assert!(
            seen.len() >= 30,
            "only {} specialties have SNOMED ids",
            seen.len()
        );
    }

    #[test]
    fn the_snomed_check_catches_typos() {
        for id in Specialty::ALL.iter().filter_map(|s| s.snomed()) {
            let digits = id.as_bytes();
            for i in 0..digits.len() {
                for wrong in b'0'..=b'9' {
                    if wrong == digits[i] {
                        continue;
                    }
                    let mut typo = digits.to_vec();
                    typo[i] = wrong;
                    let typo = String::from_utf8(typo).unwrap();
                    assert!(!valid_concept_id(&typo), "{typo} (from {id}) passed");
                }
                if i + 1 < digits.len() && digits[i] != digits[i + 1] {
                    let mut swapped = digits.to_vec();
                    swapped.swap(i, i + 1);
                    let swapped = String::from_utf8(swapped).unwrap();
                    assert!(!valid_concept_id(&swapped), "{swapped} (from {id}) passed");
                }
            }
        }
    }
}
