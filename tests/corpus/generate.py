#!/usr/bin/env python3
"""Writes the bad-input corpus (NN-short-name.json) next to this script.

Run from anywhere: `python3 tests/corpus/generate.py`. Every case starts from one valid
one-package manifest (section122_postal_2026, arriving 2026-03-02 at port 4701) and breaks one
thing; a few are raw bytes (truncated, invalid UTF-8, deep nesting). What each file must produce
is listed in expected.tsv, checked by tests/corpus.rs.
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def s10(serial, prefix="RR", country="DE"):
    weights = [8, 6, 4, 2, 3, 5, 9, 7]
    digits = f"{serial:08d}"
    c = 11 - sum(int(d) * w for d, w in zip(digits, weights)) % 11
    c = {10: 0, 11: 5}.get(c, c)
    return f"{prefix}{digits}{c}{country}"


assert s10(47312482) == "RR473124829DE"  # the brief's example


def item(**over):
    it = {
        "description": "Men's cotton T-shirt",
        "hts": "6109100012",
        "origin_country": "VN",
        "quantity": 3,
        "value": "85.00",
        "currency": "USD",
    }
    it.update(over)
    return it


def package(serial=47312482, **over):
    p = {
        "tracking_number": s10(serial),
        "category": "merchandise",
        "shipper": {"name": "Textil Versand GmbH", "country": "DE"},
        "consignee": {
            "name": f"Jane Doe {serial}",
            "address": {
                "line1": "12 Main St",
                "city": "Albany",
                "state": "NY",
                "postal_code": "12207",
                "country": "US",
            },
        },
        "weight_kg": "0.640",
        "items": [item()],
    }
    p.update(over)
    return p


def manifest(packages=None, **over):
    m = {
        "schema": "manifest/v1",
        "manifest_id": "LH-20260302-LH400-01",
        "carrier": {"code": "LH", "code_type": "iata"},
        "trip": {
            "number": "LH400",
            "departure_country": "DE",
            "departure_time": "2026-03-02T10:15:00+01:00",
            "port_of_arrival": "4701",
            "arrival_time": "2026-03-02T13:05:00-05:00",
        },
        "packages": packages if packages is not None else [package()],
    }
    m.update(over)
    return m


def dump(doc):
    return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")


def with_trip(**over):
    m = manifest()
    m["trip"].update(over)
    return m


def with_item(**over):
    return manifest([package(items=[item(**over)])])


def without_item_field(name):
    it = item()
    del it[name]
    return manifest([package(items=[it])])


def with_value_text(text):
    """A manifest whose first item value is the raw JSON text `text` (a number literal)."""
    return dump(with_item(value="@@VALUE@@")).replace(b'"@@VALUE@@"', text.encode())


POSTAL_ENTRY = "2026-07-24T12:00:00-04:00"  # postal_entry_2026 (from 2026-07-24, US Eastern)

cases = {}

valid = dump(manifest())
cases["01-truncated"] = valid[: len(valid) // 2]
cases["02-empty"] = b""
cases["03-whitespace-only"] = b" \n\t\r\n "
cases["04-not-object-array"] = dump([manifest()])
cases["05-not-object-string"] = b'"manifest/v1"'
cases["06-not-object-number"] = b"42"
bad = bytearray(valid)
at = valid.index(b"Albany")
bad[at] = 0xFF
cases["07-invalid-utf8-byte"] = bytes(bad)
cases["08-invalid-utf8-overlong"] = valid.replace(b"T-shirt", b"T-shirt \xc0\xaf")
cases["09-deep-nesting-message"] = b"[" * 100_000 + b"]" * 100_000
deep = dump(
    manifest(
        [
            package(
                tracking_number="RR473124828DE",
                **{"x-carrier-ext": "@@DEEP@@"},
            ),
            package(10000001),
        ]
    )
)
cases["10-deep-nesting-unknown-field"] = deep.replace(
    b'"@@DEEP@@"', b"[" * 100_000 + b"]" * 100_000
)
cases["11-unsupported-schema-v2"] = dump(manifest(schema="manifest/v2"))
m = manifest()
del m["schema"]
cases["12-missing-schema"] = dump(m)
cases["13-schema-not-string"] = dump(manifest(schema=1))
m = manifest()
del m["packages"]
cases["14-missing-packages"] = dump(m)
cases["15-packages-object"] = dump(manifest(packages={"0": package()}))
cases["16-empty-packages"] = dump(manifest(packages=[]))
# 10,001 minimal packages: one more than a manifest may hold (kept small: `{}` each).
cases["17-too-many-packages"] = (
    dump(manifest(packages=["@@P@@"])).replace(b'"@@P@@"', b",".join([b"{}"] * 10_001))
)
cases["18-empty-items"] = dump(manifest([package(items=[])]))
cases["19-items-object"] = dump(manifest([package(items=item())]))
cases["20-tracking-number-number"] = dump(manifest([package(tracking_number=4731248290)]))
cases["21-value-boolean"] = dump(with_item(value=True))
cases["22-quantity-string"] = dump(with_item(quantity="3"))
cases["23-shipper-string"] = dump(manifest([package(shipper="Textil Versand GmbH, DE")]))
cases["24-carrier-array"] = dump(manifest(carrier=["LH", "iata"]))
# Out of the range of a double: simd-json refuses the document (message level).
cases["25-value-1e400"] = with_value_text("1e400")
cases["26-value-30-digits"] = with_value_text("123456789012345678901234567890")
cases["27-value-nan-string"] = dump(with_item(value="NaN"))
cases["28-value-infinity-string"] = dump(with_item(value="Infinity"))
cases["29-value-exponent-string"] = dump(with_item(value="1e5"))
cases["30-value-negative-string"] = dump(with_item(value="-5.00"))
cases["31-value-negative-number"] = with_value_text("-5")
cases["32-value-three-decimals-usd"] = dump(with_item(value="19.999"))
cases["33-value-three-decimals-number"] = with_value_text("19.999")
cases["34-value-decimals-jpy"] = dump(with_item(value="1000.5", currency="JPY"))
cases["35-tracking-bad-format"] = dump(manifest([package(tracking_number="RR47312482DE")]))
cases["36-tracking-bad-check-digit"] = dump(manifest([package(tracking_number="RR473124828DE")]))
cases["37-tracking-service-j"] = dump(manifest([package(tracking_number="JJ473124829DE")]))
cases["38-tracking-service-k"] = dump(manifest([package(tracking_number="KA473124829DE")]))
# Package 0 has an unknown origin; package 1 writes UK, which is read as GB and accepted.
cases["39-invalid-origin-uk-alias-ok"] = dump(
    manifest(
        [
            package(items=[item(origin_country="ZZ")]),
            package(10000001, items=[item(origin_country="UK")]),
        ]
    )
)
cases["40-invalid-shipper-country"] = dump(
    manifest([package(shipper={"name": "Textil Versand GmbH", "country": "XX"})])
)
cases["41-invalid-currency"] = dump(with_item(currency="EURO"))
# AED is an ISO 4217 currency (config/reference/currencies.csv) with no row in fx_rates.csv.
cases["42-currency-without-fx-rate"] = dump(with_item(value="300.00", currency="AED"))
# EUR rows end 2026-12-31: an arrival in 2027 has no rate.
m = with_item(value="85.00", currency="EUR")
m["trip"]["departure_time"] = "2027-01-14T10:15:00+01:00"
m["trip"]["arrival_time"] = "2027-01-15T13:05:00-05:00"
cases["43-fx-rate-date-not-covered"] = dump(m)
cases["44-invalid-port"] = dump(with_trip(port_of_arrival="47011"))
cases["45-invalid-carrier-code"] = dump(manifest(carrier={"code": "LH1", "code_type": "iata"}))
cases["46-carrier-code-type-mismatch"] = dump(manifest(carrier={"code": "DLH", "code_type": "iata"}))
cases["47-carrier-code-type-unknown"] = dump(manifest(carrier={"code": "LH", "code_type": "airline"}))
cases["48-arrival-without-offset"] = dump(with_trip(arrival_time="2026-03-02T13:05:00"))
cases["49-arrival-impossible-date"] = dump(
    with_trip(arrival_time="2026-02-30T10:00:00Z", departure_time="2026-02-28T10:00:00Z")
)
cases["50-departure-after-arrival"] = dump(with_trip(departure_time="2026-03-02T20:15:00+01:00"))
# 12:00 EDT on 2025-08-28: the day before the first regime.
cases["51-arrival-before-regimes"] = dump(
    with_trip(arrival_time="2025-08-28T12:00:00-04:00", departure_time="2025-08-28T06:00:00+01:00")
)
m = with_trip(arrival_time="0000-01-01T00:00:00Z")
del m["trip"]["departure_time"]
cases["52-arrival-year-0000"] = dump(m)
cases["53-hts-with-dots"] = dump(with_item(hts="6109.10.0012"))
cases["54-hts-8-digits"] = dump(with_item(hts="61091000"))
# Chapter 77 is reserved. With the shipped HTS table every valid chapter (01-97 but 77) has a
# row, so NO_HTS_RATE cannot be reached with config/; tests/domain_rules.rs covers it with a
# reduced table.
cases["55-hts-reserved-chapter-77"] = dump(with_item(hts="7700000000"))
it = item()
del it["hts"]
m = manifest([package(items=[it])])
m["trip"]["departure_time"] = "2026-07-24T06:00:00+01:00"
m["trip"]["arrival_time"] = POSTAL_ENTRY
cases["56-hts-missing-postal-entry"] = dump(m)
m = with_item(hts="610910")
m["trip"]["departure_time"] = "2026-07-24T06:00:00+01:00"
m["trip"]["arrival_time"] = POSTAL_ENTRY
cases["57-hts-6-digits-postal-entry"] = dump(m)
m = manifest([package(items=[item(value="1500.00"), item(value="1000.01", quantity=1)])])
m["trip"]["departure_time"] = "2026-07-24T06:00:00+01:00"
m["trip"]["arrival_time"] = POSTAL_ENTRY
cases["58-value-above-postal-limit"] = dump(m)
cases["59-duplicate-tracking-number"] = dump(
    manifest([package(), package(consignee=package(10000001)["consignee"])])
)
m = manifest()
del m["manifest_id"]
cases["60-missing-manifest-id"] = dump(m)
p = package()
del p["consignee"]["address"]["postal_code"]
cases["61-missing-postal-code"] = dump(manifest([p]))
cases["62-missing-item-description"] = dump(without_item_field("description"))
cases["63-description-too-short"] = dump(with_item(description="ab"))
cases["64-weight-zero"] = dump(manifest([package(weight_kg="0")]))
cases["65-quantity-zero"] = dump(with_item(quantity=0))
p = package()
p["consignee"]["address"]["country"] = "CA"
cases["66-consignee-not-us"] = dump(manifest([p]))
cases["67-category-unknown"] = dump(manifest([package(category="bribe")]))
cases["68-package-not-object"] = dump(manifest([package(), 7]))
cases["69-item-not-object"] = dump(manifest([package(items=["Men's cotton T-shirt"])]))
cases["70-too-many-items"] = dump(manifest([package(items=[item(value="0.85", quantity=1)] * 101)]))
cases["71-manifest-id-invalid-chars"] = dump(manifest(manifest_id="LH 2026/03"))
cases["72-trip-number-too-long"] = dump(with_trip(number="LH400-2026-03-02X"))
p = package()
p["consignee"]["address"]["postal_code"] = "ABCDE"
cases["73-postal-code-not-zip"] = dump(manifest([p]))
p = package()
p["consignee"]["address"]["postal_code"] = "1234\u00e9"
cases["74-postal-code-non-ascii"] = dump(manifest([p]))
cases["75-weight-too-heavy"] = dump(manifest([package(weight_kg="1500")]))
cases["76-trailing-garbage"] = valid + b"\n}"
cases["77-lone-low-surrogate"] = valid.replace(b"Men's", b"Men\\udc00s")
cases["78-tracking-number-null"] = dump(manifest([package(tracking_number=None)]))
cases["79-quantity-fraction"] = with_value_text("85").replace(b'"quantity": 3', b'"quantity": 1.5')
cases["80-departure-country-invalid"] = dump(with_trip(departure_country="D"))
m = manifest([package(items=[item(currency="XYZ")]), package(10000001)])
m["trip"]["port_of_arrival"] = "47O1"
cases["81-header-and-package-errors"] = dump(m)
cases["82-weight-negative"] = dump(manifest([package(weight_kg="-1.0")]))
cases["83-tracking-country-alias-uk"] = dump(
    manifest([package(tracking_number="RR473124829UK")])
)
cases["84-two-documents"] = valid + valid
cases["85-missing-trip"] = dump({k: v for k, v in manifest().items() if k != "trip"})

for name, data in cases.items():
    with open(os.path.join(HERE, name + ".json"), "wb") as f:
        f.write(data)
print(f"{len(cases)} files written")
