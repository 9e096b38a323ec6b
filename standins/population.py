"""Synthetic families for the stand-in departments, with the outcome each application should get.

A family's records agree across the four departments unless its scenario breaks one on purpose.
Expected outcomes are not written by hand: `judge` feeds the answers the stand-in server would give
(`answer`, the same function the server uses) to the product's own judging rules
(enrollment.verification), so expectations.json and population.json cannot disagree.
Districts, ages and required verifications come from the product's policy loader (enrollment.policy).
Everything is drawn from one `random.Random(seed)`; the same seed gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enrollment import identity
from enrollment.application import RegistrationType, Stage
from enrollment.policy import DEFAULT_POLICIES_DIR, DistrictPolicy, policy_book
from enrollment.verification import (
    CODE_FOUND,
    CODE_NAME_MISMATCH,
    CODE_NOT_FOUND,
    Answer,
    Person,
    VerificationRequest,
    judge_hukou,
    judge_property,
    judge_residence_permits,
    judge_social_insurance,
)
from enrollment.verifiers import VERIFIERS, Verifier
from standins import vocab

DEFAULT_POLICIES = DEFAULT_POLICIES_DIR
SERVICES = VERIFIERS  # the four departments' record sets, keyed like the fault switches

# Scenario -> share of families. Every scenario appears at least once when families >= 20.
SCENARIOS = {
    "hukou_verified": 0.35,
    "non_hukou_verified": 0.25,
    "verification_failed_not_found": 0.08,
    "verification_failed_mismatch": 0.08,
    "not_eligible_age": 0.08,
    "without_school_choice": 0.08,
    "service_point": 0.08,
}
# Good residence permits are valid from this date at the latest until two years after the school
# year at the earliest; expired ones ended by 2024. So `judge` (which checks 31 August of the school
# year) and a caller checking "today" agree for any today from 2025-07 to the end of the school year.
_GOOD_FROM_LATEST = dt.date(2025, 6, 30)
_PROVINCE_ABBR = {"四川省": "川", "重庆市": "渝", "云南省": "云", "贵州省": "贵", "陕西省": "陕", "湖北省": "鄂"}


@dataclass
class Population:
    """Records served by the stand-ins, the applications to submit, and what each should come to.

    records[service][id_number] = {"name": registered name, "data": what a 0000 answer carries}.
    """

    meta: dict[str, Any]
    records: dict[str, dict[str, dict[str, Any]]]
    applications: list[dict[str, Any]] = field(default_factory=list)
    expectations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def by_scenario(self, scenario: str) -> list[dict[str, Any]]:
        return [a for a in self.applications if self.expectations[a["application_id"]]["scenario"] == scenario]

    def write(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "population.json").write_text(
            json.dumps({"meta": self.meta, "records": self.records}, ensure_ascii=False, indent=1) + "\n",
            encoding="utf-8",
        )
        (out_dir / "applications.jsonl").write_text(
            "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in self.applications), encoding="utf-8"
        )
        (out_dir / "expectations.json").write_text(
            json.dumps(self.expectations, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, data_dir: Path) -> Population:
        """Read a directory written by `write`; applications and expectations are optional."""
        data_dir = Path(data_dir)
        raw = json.loads((data_dir / "population.json").read_text(encoding="utf-8"))
        apps_path, exp_path = data_dir / "applications.jsonl", data_dir / "expectations.json"
        applications = (
            [json.loads(line) for line in apps_path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if apps_path.exists()
            else []
        )
        expectations = json.loads(exp_path.read_text(encoding="utf-8")) if exp_path.exists() else {}
        return cls(meta=raw["meta"], records=raw["records"], applications=applications, expectations=expectations)


def generate(seed: int, families: int, policies_dir: Path = DEFAULT_POLICIES) -> Population:
    """Build `families` families (one application each) for the districts in policies_dir."""
    rng = random.Random(seed)
    builder = _Builder(rng, load_districts(policies_dir))
    for index, scenario in enumerate(_scenario_plan(rng, families), start=1):
        builder.family(index, scenario)
    counts = {name: 0 for name in SCENARIOS}
    for expectation in builder.expectations.values():
        counts[expectation["scenario"]] += 1
    meta = {"format": 1, "seed": seed, "families": families, "scenarios": counts}
    return Population(meta, builder.records, builder.applications, builder.expectations)


def answer(records: Mapping[str, Mapping[str, Any]], id_number: str, name: str) -> Answer:
    """What a department holding `records` answers about one person; the server answers with this too.

    1001 without a record for the number, 1002 when the registered name differs, else 0000 with the data.
    """
    record = records.get(id_number)
    if record is None:
        return Answer(code=CODE_NOT_FOUND)
    if record["name"] != name:
        return Answer(code=CODE_NAME_MISMATCH)
    return Answer(code=CODE_FOUND, data=record["data"])


def judge(
    application: dict[str, Any], records: Mapping[str, Mapping[str, Mapping[str, Any]]], policy: DistrictPolicy
) -> dict[str, str]:
    """What each verifier should come to for this application: matched | mismatch | not_found | not_required.

    For each verifier the district requires, the answers the stand-ins give about the application's
    persons go to the product's judge functions (enrollment.verification), which look at the student
    (hukou) or at every guardian (matched if any guardian's record is acceptable). Generated failures
    break every guardian the same way, so an "every guardian" rule would agree. A residence permit is
    judged on 31 August of the school year (see _GOOD_FROM_LATEST).
    """
    reg_type = application["registration_type"]
    required = policy.required_verifications(reg_type)
    student = _person(application["student"])
    guardians = [_person(g) for g in application["guardians"]]

    def request(verifier: Verifier) -> VerificationRequest:
        return VerificationRequest(
            application_id=application["application_id"],
            verifier=verifier,
            registration_type=reg_type,
            district_code=application["district_code"],
            city_code=policy.city_code,
            min_social_insurance_months=_min_insurance_months(policy, reg_type),
            student=student,
            guardians=guardians,
        )

    def answers(verifier: Verifier) -> list[Answer]:
        return [answer(records[verifier], g.id_number, g.name) for g in guardians]

    on_cutoff = dt.date(application["school_year"], 8, 31)
    judges = {
        "hukou": lambda r: judge_hukou(r, answer(records["hukou"], student.id_number, student.name)),
        "residence_permit": lambda r: judge_residence_permits(r, answers("residence_permit"), today=on_cutoff),
        "social_insurance": lambda r: judge_social_insurance(r, answers("social_insurance")),
        "property": lambda r: judge_property(r, answers("property")),
    }
    return {
        verifier: judges[verifier](request(verifier)).outcome if verifier in required else "not_required"
        for verifier in VERIFIERS
    }


def _person(person: Mapping[str, Any]) -> Person:
    return Person(name=person["name"], id_number=person["id_number"])


def expected_route(scenario: str, outcomes: dict[str, str], application: dict[str, Any]) -> str:
    """The case's path through the workflow, in the words of docs/standins.md."""
    if scenario == "not_eligible_age":
        return "not_eligible"
    if application["channel"] == "service_point":
        return "offline_review"
    if any(o in ("mismatch", "not_found") for o in outcomes.values()):
        return "offline_registration"
    if application.get("school_choice") is None:
        return "await_school_choice"
    return "online_review"


def _scenario_plan(rng: random.Random, families: int) -> list[str]:
    """Scenario per family: quotas by share (largest remainders), then shuffled."""
    exact = {name: share * families for name, share in SCENARIOS.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(SCENARIOS, key=lambda n: (-(exact[n] - counts[n]), list(SCENARIOS).index(n)))
    for name in by_remainder[: families - sum(counts.values())]:
        counts[name] += 1
    plan = [name for name, count in counts.items() for _ in range(count)]
    rng.shuffle(plan)
    return plan


# -- what the generator reads from a district's policy ---------------------------------------------
def load_districts(policies_dir: Path) -> list[DistrictPolicy]:
    """Every district policy under policies_dir, in district-code order (the product's loader)."""
    book = policy_book(Path(policies_dir))
    if not book.codes():
        raise ValueError(f"no policy districts found under {policies_dir}")
    # Every code the book lists has its policy.
    return [policy for code in book.codes() if (policy := book.district(code)) is not None]


def _min_insurance_months(policy: DistrictPolicy, registration_type: RegistrationType) -> int:
    return policy.registration_types[registration_type].min_social_insurance_months


def _age_range(policy: DistrictPolicy, stage: Stage) -> tuple[int, int]:
    rule = policy.stages[stage]
    return rule.min_age, rule.max_age


# Failure variants: (name, registration types it fits, district/type test).
_Variant = tuple[str, tuple[RegistrationType, ...], Callable[[DistrictPolicy, RegistrationType], bool]]
_NOT_FOUND: tuple[_Variant, ...] = (
    ("no_residence_permit", ("non_hukou",), lambda d, t: "residence_permit" in d.required_verifications(t)),
    ("no_social_insurance", ("non_hukou",), lambda d, t: "social_insurance" in d.required_verifications(t)),
    ("no_property", ("hukou", "non_hukou"), lambda d, t: "property" in d.required_verifications(t)),
)
_MISMATCH: tuple[_Variant, ...] = (
    ("student_name", ("hukou", "non_hukou"), lambda d, t: "hukou" in d.required_verifications(t)),
    ("guardian_name", ("hukou", "non_hukou"), lambda d, t: bool(set(d.required_verifications(t)) - {"hukou"})),
    (
        "insurance_months_low",
        ("non_hukou",),
        lambda d, t: "social_insurance" in d.required_verifications(t) and _min_insurance_months(d, t) > 0,
    ),
    ("permit_expired", ("non_hukou",), lambda d, t: "residence_permit" in d.required_verifications(t)),
    ("permit_other_district", ("non_hukou",), lambda d, t: "residence_permit" in d.required_verifications(t)),
)


class _Builder:
    def __init__(self, rng: random.Random, districts: list[DistrictPolicy]):
        self.rng = rng
        self.districts = districts
        self.regions = dict(vocab.REGIONS)
        for d in districts:
            self.regions[d.district_code] = ("四川省", d.city_name, d.district_name)
        self.records: dict[str, dict[str, dict]] = {service: {} for service in SERVICES}
        self.applications: list[dict] = []
        self.expectations: dict[str, dict] = {}
        self.used_ids: set[str] = set()
        self.certificate_serial = rng.randrange(10_000, 50_000)

    # -- one family ---------------------------------------------------------------------------
    def family(self, index: int, scenario: str) -> None:
        rng = self.rng
        variant = None
        reg_type: RegistrationType
        if scenario in ("verification_failed_not_found", "verification_failed_mismatch"):
            table = _NOT_FOUND if scenario == "verification_failed_not_found" else _MISMATCH
            options = [(name, t, d) for name, types, fits in table for t in types for d in self.districts if fits(d, t)]
            variant = rng.choice(sorted({o[0] for o in options}, key=[v[0] for v in table].index))
            _, reg_type, district = rng.choice([o for o in options if o[0] == variant])
        else:
            by_scenario: dict[str, RegistrationType] = {"hukou_verified": "hukou", "non_hukou_verified": "non_hukou"}
            reg_type = by_scenario.get(scenario, "hukou" if rng.random() < 0.55 else "non_hukou")
            district = rng.choice(self.districts)

        years = sorted(district.open_school_years)
        school_year = years[-1] if rng.random() < 0.85 or len(years) == 1 else rng.choice(years[:-1])
        stage: Stage = "primary" if scenario == "not_eligible_age" or rng.random() < 0.7 else "junior"
        low, high = _age_range(district, stage)
        if scenario == "not_eligible_age":
            variant = "too_young" if rng.random() < 0.7 else "too_old"
            age = low - 1 if variant == "too_young" else high + 1
        else:
            usual = {"primary": 6, "junior": 12}[stage]
            age = usual if low <= usual <= high and rng.random() < 0.85 else rng.randint(low, min(high, low + 2))
        student_birth = self._birth_for_age(school_year, age)

        ethnicity = self._weighted(vocab.ETHNICITIES)
        home = district.district_code if reg_type == "hukou" else self._origin_region(district, ethnicity)
        guardians = self._guardians(ethnicity, home, student_birth, single=variant == "guardian_name")
        student_gender = rng.choice(("male", "female"))
        father = next((g for g in guardians if g["relation"] == "father"), guardians[0])
        student: dict[str, Any] = {
            "name": self._name(ethnicity, student_gender, family_name=father["family_name"]),
            "gender": student_gender,
            "birth_date": student_birth,
            "id_number": self._new_id(home, student_birth, student_gender),
        }
        self._hukou_records(student, guardians, ethnicity, home, school_year)
        self._guardian_records(guardians, reg_type, district, home, school_year)
        self._break(variant, guardians, district, reg_type, school_year)

        application: dict[str, Any] = {
            "application_id": f"SC{school_year}-{index:06d}",
            "school_year": school_year,
            "stage": stage,
            "registration_type": reg_type,
            "channel": "service_point"
            if scenario == "service_point"
            else ("enrollment_system" if rng.random() < 0.55 else "platform"),
            "district_code": district.district_code,
            "student": {
                "name": self._misspell(student["name"]) if variant == "student_name" else student["name"],
                "gender": student_gender,
                "birth_date": student_birth.isoformat(),
                "id_number": student["id_number"],
            },
            "guardians": [
                {
                    "name": self._misspell(g["name"]) if variant == "guardian_name" else g["name"],
                    "id_number": g["id_number"],
                    "relation": g["relation"],
                    "phone": self._phone(),
                }
                for g in guardians
            ],
        }
        schools = [(zone.zone_id, school.school_id) for zone, school in district.schools_for(stage)]
        if scenario != "without_school_choice" and schools:
            zone_id, school_id = rng.choice(schools)
            application["school_choice"] = {"zone_id": zone_id, "school_id": school_id}
        outcomes = judge(application, self.records, district)
        self._check(scenario, outcomes)
        self.applications.append(application)
        self.expectations[application["application_id"]] = {
            "scenario": scenario,
            "variant": variant,
            "district_code": district.district_code,
            "registration_type": reg_type,
            "expected_outcomes": outcomes,
            "expected_route": expected_route(scenario, outcomes, application),
        }

    @staticmethod
    def _check(scenario: str, outcomes: dict[str, str]) -> None:
        failed = any(o in ("mismatch", "not_found") for o in outcomes.values())
        if failed != scenario.startswith("verification_failed"):
            raise AssertionError(f"generator bug: {scenario} produced {outcomes}")

    # -- people -------------------------------------------------------------------------------
    def _guardians(self, ethnicity: str, home: str, child_birth: dt.date, single: bool) -> list[dict]:
        rng = self.rng
        roll = rng.random()
        if single:
            relations = [rng.choice(("father", "mother"))]
        elif roll < 0.65:
            relations = ["father", "mother"]
        elif roll < 0.82:
            relations = ["mother"]
        elif roll < 0.94:
            relations = ["father"]
        else:
            relations = ["guardian"]
        latest = min(1995, child_birth.year - 20)
        guardians = []
        for relation in relations:
            gender = {"father": "male", "mother": "female"}.get(relation) or rng.choice(("male", "female"))
            birth = self._random_date(dt.date(1978, 1, 1), dt.date(latest, 12, 31))
            family_name = self._family_name(ethnicity)
            guardians.append(
                {
                    "relation": relation,
                    "gender": gender,
                    "birth_date": birth,
                    "family_name": family_name,
                    "name": self._name(ethnicity, gender, family_name=family_name),
                    "id_number": self._new_id(home, birth, gender),
                }
            )
        return guardians

    def _family_name(self, ethnicity: str) -> str | None:
        if ethnicity == "彝族":
            return self.rng.choice(vocab.YI_CLANS)
        if ethnicity == "藏族":
            return None
        return self.rng.choice(vocab.QIANG_SURNAMES if ethnicity == "羌族" else vocab.SURNAMES)

    def _name(self, ethnicity: str, gender: str, family_name: str | None = None) -> str:
        rng = self.rng
        male = gender == "male"
        if ethnicity == "藏族":
            parts = vocab.TIBETAN_MALE if male else vocab.TIBETAN_FEMALE
            return rng.choice(parts) + rng.choice(vocab.TIBETAN_MALE + vocab.TIBETAN_FEMALE)
        if ethnicity == "彝族":
            return (family_name or rng.choice(vocab.YI_CLANS)) + rng.choice(
                vocab.YI_GIVEN_MALE if male else vocab.YI_GIVEN_FEMALE
            )
        chars = vocab.GIVEN_MALE if male else vocab.GIVEN_FEMALE
        given = "".join(rng.choice(chars) for _ in range(1 if rng.random() < 0.3 else 2))
        return (family_name or rng.choice(vocab.SURNAMES)) + given

    def _misspell(self, name: str) -> str:
        """The same name with its last character changed, as a typo or homophone would."""
        pool = vocab.GIVEN_MALE + vocab.GIVEN_FEMALE
        return name[:-1] + self.rng.choice([c for c in pool if c != name[-1]])

    def _new_id(self, region: str, birth: dt.date, gender: str) -> str:
        while True:
            number = identity.make(region, birth, self.rng.randrange(1000), gender)
            if number not in self.used_ids:
                self.used_ids.add(number)
                return number

    def _phone(self) -> str:
        return self.rng.choice(vocab.PHONE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"

    # -- places -------------------------------------------------------------------------------
    def _origin_region(self, district: DistrictPolicy, ethnicity: str) -> str:
        rng = self.rng
        if ethnicity in vocab.ETHNIC_HOME and rng.random() < 0.7:
            return rng.choice(vocab.ETHNIC_HOME[ethnicity])
        here = district.district_code
        same_city = [
            d.district_code for d in self.districts if d.city_code == district.city_code and d.district_code != here
        ]
        if same_city and rng.random() < 0.3:
            return rng.choice(same_city)
        return rng.choice(sorted(code for code in self.regions if code != here))

    def _place(self, region: str) -> str:
        province, city, county = self.regions[region]
        return (province if province != city else "") + city + county

    def _address(self, region: str, with_street: bool = True) -> str:
        rng = self.rng
        street = rng.choice(vocab.STREETS.get(region, vocab.GENERIC_STREETS)) if with_street else ""
        return (
            f"{self._place(region)}{street}{rng.choice(vocab.ROADS)}{rng.randint(1, 399)}号"
            f"{rng.randint(1, 18)}栋{rng.randint(1, 4)}单元{rng.randint(1, 32)}{rng.randint(1, 6):02d}室"
        )

    def _authority(self, region: str) -> str:
        _, city, county = self.regions[region]
        return f"{city}公安局{county}分局"

    # -- records ------------------------------------------------------------------------------
    def _hukou_records(self, student, guardians, ethnicity, home, school_year) -> None:
        rng = self.rng
        head = guardians[0]
        address = self._address(home)
        snapshot = dt.date(school_year - 1, 10, 31)
        if head["relation"] in ("father", "mother"):
            child_relation = "子" if student["gender"] == "male" else "女"
        else:
            child_relation = "其他"
        people = [(student, child_relation)] + [
            (g, "户主" if g is head else ("夫" if g["gender"] == "male" else "妻")) for g in guardians
        ]
        for person, relation in people:
            birth = person["birth_date"]
            if person is student and rng.random() < 0.85:
                entered = birth + dt.timedelta(days=rng.randint(10, 120))
            elif person is student:
                entered = self._random_date(birth, snapshot)
            else:  # adults joined the household before the child was born
                entered = self._random_date(dt.date(birth.year + 18, 1, 1), student["birth_date"])
            born_in = home if rng.random() < 0.85 else rng.choice(sorted(self.regions))
            self.records["hukou"][person["id_number"]] = {
                "name": person["name"],
                "data": {
                    "name": person["name"],
                    "gender": person["gender"],
                    "ethnicity": ethnicity,
                    "birth_date": birth.isoformat(),
                    "birthplace": self._place(born_in),
                    "hukou_address": address,
                    "hukou_region_code": home,
                    "household_head_name": head["name"],
                    "relation_to_head": relation,
                    "entered_on": min(entered, snapshot).isoformat(),
                },
            }

    def _guardian_records(self, guardians, reg_type, district: DistrictPolicy, home, school_year) -> None:
        rng = self.rng
        required = district.required_verifications(reg_type)
        if reg_type == "non_hukou" or "residence_permit" in required:
            residence = self._address(district.district_code)
            for g in guardians:
                self.records["residence_permit"][g["id_number"]] = self._permit(
                    g, district.district_code, residence, school_year
                )
        for g in guardians:
            if "social_insurance" in required:
                low = _min_insurance_months(district, reg_type)
                self.records["social_insurance"][g["id_number"]] = self._insurance(
                    g, district.city_code, school_year, rng.randint(max(low, 1), max(low, 1) + 96), "active"
                )
            elif rng.random() < 0.85:
                status = "active" if rng.random() < 0.9 else "suspended"
                city = district.city_code if reg_type == "hukou" or rng.random() < 0.6 else home[:4] + "00"
                self.records["social_insurance"][g["id_number"]] = self._insurance(
                    g, city, school_year, rng.randint(1, 180), status
                )
        if "property" in required or rng.random() < (0.65 if reg_type == "hukou" else 0.3):
            self._titles(guardians, district.district_code)
        elif reg_type == "non_hukou" and rng.random() < 0.3:
            self._titles(guardians, home)

    def _permit(self, guardian, region: str, address: str, school_year: int) -> dict:
        rng = self.rng
        valid_from = self._random_date(dt.date(2019, 1, 1), _GOOD_FROM_LATEST).replace(day=rng.randint(1, 28))
        years = max(school_year + 2 - valid_from.year + rng.randint(0, 2), 3)
        return {
            "name": guardian["name"],
            "data": {
                "permit_number": f"{region}{valid_from.year}{rng.randrange(10**6):06d}",
                "name": guardian["name"],
                "residence_address": address,
                "residence_region_code": region,
                "issuing_authority": self._authority(region),
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_from.replace(year=valid_from.year + years).isoformat(),
            },
        }

    def _insurance(self, guardian, city_code: str, school_year: int, months: int, status: str) -> dict:
        rng = self.rng
        snapshot_month = (school_year - 1) * 12 + 9  # October of the year before, 0-based month count
        adult_month = (guardian["birth_date"].year + 18) * 12 + guardian["birth_date"].month - 1
        months = max(0, min(months, snapshot_month - adult_month))
        first = max(adult_month, snapshot_month - months - rng.randint(0, 24))
        word = rng.choice(vocab.EMPLOYER_WORDS)
        return {
            "name": guardian["name"],
            "data": {
                "name": guardian["name"],
                "employer": rng.choice(vocab.EMPLOYERS).format(word),
                "insurance_type": self._weighted(vocab.INSURANCE_TYPES),
                "insured_region_code": city_code,
                "first_insured_month": f"{first // 12:04d}-{first % 12 + 1:02d}",
                "months_paid": months,
                "status": status,
            },
        }

    def _titles(self, owners, region: str) -> None:
        rng = self.rng
        province, city, county = self.regions[region]
        registered = self._random_date(dt.date(2016, 1, 1), dt.date(2025, 12, 31))
        self.certificate_serial += rng.randint(1, 900)
        share = "单独所有" if len(owners) == 1 else ("共同共有" if rng.random() < 0.9 else "按份共有")
        place = city if province != city else county
        title = {
            "certificate_number": f"{_PROVINCE_ABBR.get(province, '川')}({registered.year}){place}"
            f"不动产权第{self.certificate_serial:07d}号",
            "owner": "、".join(o["name"] for o in owners),
            "property_address": self._address(region, with_street=False).removeprefix(
                province if province != city else ""
            ),
            "property_region_code": region,
            "floor_area_m2": round(rng.uniform(45, 160), 2),
            "registered_on": registered.isoformat(),
            "co_ownership": share,
        }
        for owner in owners:
            entry = self.records["property"].setdefault(
                owner["id_number"], {"name": owner["name"], "data": {"titles": []}}
            )
            entry["data"]["titles"].append(title)

    def _break(self, variant, guardians, district: DistrictPolicy, reg_type, school_year) -> None:
        """Apply a failure variant to every guardian's records (name variants act on the application)."""
        rng = self.rng
        for g in guardians:
            number = g["id_number"]
            if variant in ("no_residence_permit", "no_social_insurance", "no_property"):
                self.records[variant.removeprefix("no_")].pop(number, None)
            elif variant == "insurance_months_low":
                data = self.records["social_insurance"][number]["data"]
                data["months_paid"] = rng.randint(0, _min_insurance_months(district, reg_type) - 1)
            elif variant == "permit_expired":
                data = self.records["residence_permit"][number]["data"]
                start = self._random_date(dt.date(2017, 1, 1), dt.date(2021, 12, 31)).replace(day=rng.randint(1, 28))
                end = start.replace(year=start.year + rng.randint(1, 3))
                data["valid_from"], data["valid_until"] = start.isoformat(), end.isoformat()
            elif variant == "permit_other_district":
                others = sorted(
                    c for c in self.regions if c[:4] == district.district_code[:4] and c != district.district_code
                )
                elsewhere = rng.choice(others or sorted(c for c in self.regions if c != district.district_code))
                record = self._permit(g, elsewhere, self._address(elsewhere), school_year)
                self.records["residence_permit"][number] = record

    # -- small draws --------------------------------------------------------------------------
    def _weighted(self, pairs) -> str:
        values, weights = zip(*pairs, strict=True)
        return self.rng.choices(values, weights=weights)[0]

    def _random_date(self, start: dt.date, end: dt.date) -> dt.date:
        return start + dt.timedelta(days=self.rng.randint(0, max(0, (end - start).days)))

    def _birth_for_age(self, school_year: int, age: int) -> dt.date:
        """A birth date giving exactly `age` full years on 31 August of the school year."""
        return self._random_date(dt.date(school_year - age - 1, 9, 1), dt.date(school_year - age, 8, 31))
