"""The sample federation's words in each language the pages speak.

The sample evidence's fields (birth certificates, residence records, diplomas) as citizens
read them, in each language the pages speak: the sample portal's ``[labels]`` and the sample
preview pages' ``[preview.labels]``. An operator's settings give their own.
"""

from __future__ import annotations

from exchange.web.languages import Text

SAMPLE_LABELS: dict[str, Text] = {
    "BirthCertificate": {
        "en": "Birth certificate",
        "fr": "Acte de naissance",
        "ar": "شهادة الميلاد",
    },
    "ResidenceRecord": {
        "en": "Residence record",
        "fr": "Justificatif de domicile",
        "ar": "وثيقة الإقامة",
    },
    "Diploma": {"en": "Diploma", "fr": "Diplôme", "ar": "الشهادة الجامعية"},
    "address": {"en": "Address", "fr": "Adresse", "ar": "العنوان"},
    "street": {"en": "Street", "fr": "Rue", "ar": "الشارع"},
    "building": {"en": "Building", "fr": "Bâtiment", "ar": "المبنى"},
    "apartment": {"en": "Apartment", "fr": "Appartement", "ar": "الشقة"},
    "postalCode": {"en": "Postal code", "fr": "Code postal", "ar": "الرمز البريدي"},
    "residentSince": {"en": "Resident since", "fr": "Résident depuis le", "ar": "مقيم منذ"},
    "honours": {"en": "Honours", "fr": "Mention", "ar": "التقدير"},
    "personCode": {"en": "Person code", "fr": "Code personnel", "ar": "الرمز الشخصي"},
    "givenName": {"en": "Given name", "fr": "Prénom", "ar": "الاسم الشخصي"},
    "familyName": {"en": "Family name", "fr": "Nom de famille", "ar": "اسم العائلة"},
    "dateOfBirth": {"en": "Date of birth", "fr": "Date de naissance", "ar": "تاريخ الميلاد"},
    "placeOfBirth": {"en": "Place of birth", "fr": "Lieu de naissance", "ar": "مكان الميلاد"},
    "municipality": {"en": "Municipality", "fr": "Commune", "ar": "البلدية"},
    "country": {"en": "Country", "fr": "Pays", "ar": "البلد"},
    "sex": {"en": "Sex", "fr": "Sexe", "ar": "الجنس"},
    "mother": {"en": "Mother", "fr": "Mère", "ar": "الأم"},
    "father": {"en": "Father", "fr": "Père", "ar": "الأب"},
    "registrationNumber": {
        "en": "Registration number",
        "fr": "Numéro d'enregistrement",
        "ar": "رقم التسجيل",
    },
    "registeredOn": {"en": "Registered on", "fr": "Enregistré le", "ar": "تاريخ التسجيل"},
    "issuingAuthority": {
        "en": "Issuing authority",
        "fr": "Autorité émettrice",
        "ar": "جهة الإصدار",
    },
    "institution": {"en": "Institution", "fr": "Établissement", "ar": "المؤسسة"},
    "name": {"en": "Name", "fr": "Nom", "ar": "الاسم"},
    "registryCode": {"en": "Registry code", "fr": "Code au registre", "ar": "رمز السجل"},
    "qualification": {"en": "Qualification", "fr": "Qualification", "ar": "المؤهل"},
    "title": {"en": "Title", "fr": "Intitulé", "ar": "المسمى"},
    "level": {"en": "Level", "fr": "Niveau", "ar": "المستوى"},
    "fieldOfStudy": {"en": "Field of study", "fr": "Domaine d'études", "ar": "مجال الدراسة"},
    "awardedOn": {"en": "Awarded on", "fr": "Délivré le", "ar": "تاريخ المنح"},
    "diplomaNumber": {"en": "Diploma number", "fr": "Numéro du diplôme", "ar": "رقم الشهادة"},
}

# What the sample consent service's pages call each evidence type, and the members' names.
EVIDENCE_TYPES: dict[str, Text] = {
    "birth-certificate": {
        "en": "birth certificate",
        "fr": "acte de naissance",
        "ar": "شهادة الميلاد",
    },
    "residence-record": {
        "en": "residence record",
        "fr": "justificatif de domicile",
        "ar": "وثيقة الإقامة",
    },
    "business-registration": {
        "en": "business registration",
        "fr": "immatriculation de l'entreprise",
        "ar": "قيد المنشأة التجارية",
    },
    "diploma": {"en": "diploma", "fr": "diplôme", "ar": "الشهادة الجامعية"},
}
MEMBER_NAMES: dict[str, Text] = {
    "EE/GOV/70000310": {"fr": "Registre de la population", "ar": "سجل السكان"},
    "EE/GOV/70000001": {"fr": "Portail de l'État", "ar": "بوابة الدولة"},
    "EE/GOV/70000000": {
        "fr": "Autorité des systèmes d'information",
        "ar": "هيئة نظم المعلومات",
    },
    "EE/GOV/70003098": {"fr": "Registre du commerce", "ar": "السجل التجاري"},
    "EE/GOV/74001073": {"fr": "Université de Tartu", "ar": "جامعة تارتو"},
}
