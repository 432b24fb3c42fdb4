#!/usr/bin/env python3
"""Writes realistic manifest/v1 messages as JSON Lines (one compact manifest per line) to stdout.

    python3 loadtest/gen_manifests.py --manifests 20000 --packages 50 > /tmp/big.jsonl

Deterministic for a given --seed and --bad-rate. This is the same algorithm as the Rust
generator in loadtest/src/lib.rs (same splitmix64 PRNG, same draws in the same order), so
`Generator::new(seed, bad_rate)` produces byte-identical manifests.

What the manifests hold: five carriers (IATA LH/AF/UA, ICAO DLH, SCAC ABCD), departures from the
countries those carriers fly from, arrival times over 2025-09-01..2026-11-30 (all three rate
regimes) with the right US Eastern offset, repeated shippers, consignees with US addresses, 1-3
items per package with 10-digit HTS numbers of the postal-entry table, values as strings and
sometimes as JSON numbers, USD/EUR/GBP/JPY, valid UPU S10 tracking numbers unique within each
manifest, and a share --bad-rate of bad packages (wrong check digit, unknown country XX, negative
value). Standard library only.
"""

import argparse
import sys

MASK = 0xFFFFFFFFFFFFFFFF


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n

    def chance_ppm(self, ppm):
        return self.below(1_000_000) < ppm

    def pick(self, items):
        return items[self.below(len(items))]


# (code, code_type, trip prefix, departure countries)
CARRIERS = [
    ("LH", "iata", "LH", ["DE"]),
    ("AF", "iata", "AF", ["FR"]),
    ("UA", "iata", "UA", ["GB", "JP", "KR", "TW", "DE"]),
    ("DLH", "icao", "DLH", ["DE", "IN"]),
    ("ABCD", "scac", "ABCD-", ["CN", "VN", "TH", "MX", "CA", "BR"]),
]

# Standard UTC offset (minutes) of each departure country, for departure_time.
UTC_OFFSET = {
    "DE": 60, "FR": 60, "GB": 0, "JP": 540, "KR": 540, "CN": 480, "TW": 480,
    "VN": 420, "TH": 420, "IN": 330, "MX": -360, "CA": -300, "BR": -180,
}

PORTS = ["4701", "2720", "3901", "1704", "5206", "2809", "3029", "1303"]

ORIGINS = ["CN", "VN", "DE", "GB", "JP", "IN", "MX", "CA", "BR", "FR", "KR", "TW", "TH"]

SHIPPERS = [
    ("Textil Versand GmbH", "DE"),
    ("Kamera Haus", "DE"),
    ("Müller Elektronik KG", "DE"),
    ("Oma Schmidt", "DE"),
    ("Maison Lefèvre", "FR"),
    ("Boutique Étoile SARL", "FR"),
    ("Librairie du Pont", "FR"),
    ("Camden Knitwear Ltd", "GB"),
    ("Oxford Tea Company", "GB"),
    ("J. Patel", "GB"),
    ("Sakura Trading Co", "JP"),
    ("Tanaka Camera Shop", "JP"),
    ("Hanbok Seoul", "KR"),
    ("K-Beauty Direct", "KR"),
    ("Formosa Components", "TW"),
    ("Taipei Cycle Parts", "TW"),
    ("Shenzhen Bright Electronics Co Ltd", "CN"),
    ("Yiwu Happy Toys", "CN"),
    ("Guangzhou Fashion Trading", "CN"),
    ("Hangzhou Silk House", "CN"),
    ("Saigon Apparel", "VN"),
    ("Hanoi Handicrafts", "VN"),
    ("Bangkok Silk Emporium", "TH"),
    ("Siam Leather Goods", "TH"),
    ("Jaipur Block Prints", "IN"),
    ("Mumbai Spice Traders", "IN"),
    ("Artesanías Oaxaca", "MX"),
    ("Plata de Taxco", "MX"),
    ("Maple Outfitters", "CA"),
    ("Northern Lights Crafts", "CA"),
    ("Couro do Brasil", "BR"),
    ("Havaianas Loja Online", "BR"),
]

# (10-digit HTS from config/rates/hts_postal_entry_2026.csv, descriptions, min US cents, max US cents)
PRODUCTS = [
    ("6109100012", ["Men's cotton T-shirt", "Cotton T-shirt, printed", "Boys' knitted cotton tee"], 800, 6_000),
    ("6110202079", ["Cotton pullover sweater", "Knitted cotton cardigan", "Women's cotton sweater"], 2_500, 12_000),
    ("8517130000", ["Smartphone 128GB", "Mobile phone, unlocked", "Refurbished smartphone"], 9_000, 90_000),
    ("6404199060", ["Canvas sneakers", "Textile running shoes", "Slip-on shoes, textile upper"], 2_000, 15_000),
    ("4202221500", ["PVC handbag", "Plastic-coated tote bag", "Clutch bag, plastic sheeting"], 1_500, 9_000),
    ("3304990000", ["Face cream 50ml", "Lipstick set", "Sheet masks, pack of 10", "Foundation makeup"], 600, 8_000),
    ("9503000090", ["Plastic building blocks", "Plush toy bear", "Wooden puzzle", "Toy car set"], 500, 6_000),
    ("6117100000", ["Hand-knitted scarf", "Wool shawl", "Knitted muffler"], 1_200, 9_000),
    ("8471300100", ["Laptop computer 14in", "Notebook PC", "Used laptop"], 25_000, 150_000),
]

VAGUE = ["Gift", "Parts", "Goods", "Clothes", "Sample", "Personal effects"]

FIRST_NAMES = [
    "Jane", "John", "Maria", "James", "Wei", "Priya", "Carlos", "Emily", "Michael", "Aisha",
    "David", "Sofia", "Daniel", "Linh", "Olivia", "Kenji", "Fatima", "Robert", "Grace", "Luis",
]
LAST_NAMES = [
    "Doe", "Roe", "Smith", "Johnson", "Garcia", "Nguyen", "Chen", "Patel", "Kim", "Brown",
    "Martinez", "Lee", "Williams", "O'Brien", "Schmidt", "Tanaka", "Davis", "Lopez", "Wilson",
]
STREETS = [
    "Main St", "Elm Ave", "Oak Rd", "Maple Dr", "Cedar Ln", "Park Ave", "Washington Blvd",
    "Lake St", "Hill Rd", "2nd Ave", "Sunset Blvd", "Pine St",
]
# (city, state, first ZIP of its range)
CITIES = [
    ("Albany", "NY", 12201),
    ("New York", "NY", 10001),
    ("Austin", "TX", 73301),
    ("Houston", "TX", 77001),
    ("Denver", "CO", 80202),
    ("Chicago", "IL", 60601),
    ("Los Angeles", "CA", 90001),
    ("San Jose", "CA", 95110),
    ("Seattle", "WA", 98101),
    ("Miami", "FL", 33101),
    ("Atlanta", "GA", 30301),
    ("Boston", "MA", 2108),
    ("Phoenix", "AZ", 85001),
    ("Portland", "OR", 97201),
    ("Newark", "NJ", 7102),
]

# UPU S10 service indicators (none starts with J or K).
SERVICES = ["RR", "RX", "LX", "CP", "EE", "RA", "LZ", "UA", "CX", "EA"]

# Multipliers coprime with 10: (start + i) * m mod 10**8 is a bijection, so serials never repeat
# within a manifest.
SERIAL_MULTIPLIERS = [7_919, 104_729, 1_299_709, 15_485_863, 32_452_843]

FIRST_ARRIVAL_DAY = 243  # 2025-09-01, counted from 2025-01-01
ARRIVAL_DAYS = 456  # 2025-09-01..=2026-11-30
MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def s10_check_digit(serial):
    weights = [8, 6, 4, 2, 3, 5, 9, 7]
    digits = f"{serial:08d}"
    total = sum(int(d) * w for d, w in zip(digits, weights))
    c = 11 - total % 11
    return 0 if c == 10 else 5 if c == 11 else c


def civil(day):
    """(year, month, day) of a day counted from 2025-01-01 (no leap years in range)."""
    year = 2025
    while day < 0:
        year -= 1
        day += 365
    while day >= 365:
        year += 1
        day -= 365
    month = 0
    while day >= MONTH_DAYS[month]:
        day -= MONTH_DAYS[month]
        month += 1
    return year, month + 1, day + 1


def eastern_dst(day):
    # 2025-11-02 = 305, 2026-03-08 = 431, 2026-11-01 = 669.
    return day < 305 or 431 <= day < 669


def rfc3339(local_minute, offset):
    day, minute = divmod(local_minute, 1440)
    y, mo, d = civil(day)
    sign = "-" if offset < 0 else "+"
    off = abs(offset)
    return f"{y:04d}-{mo:02d}-{d:02d}T{minute // 60:02d}:{minute % 60:02d}:00{sign}{off // 60:02d}:{off % 60:02d}"


def hundredths(cents, trim):
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    if not trim:
        return f"{sign}{whole}.{frac:02d}"
    if frac == 0:
        return f"{sign}{whole}"
    if frac % 10 == 0:
        return f"{sign}{whole}.{frac // 10}"
    return f"{sign}{whole}.{frac:02d}"


class Generator:
    def __init__(self, seed, bad_rate):
        self.rng = SplitMix64(seed)
        self.bad_ppm = int(min(max(bad_rate, 0.0), 1.0) * 1_000_000.0 + 0.5)
        self.seq = 0

    def manifest(self, packages):
        self.seq += 1
        rng = self.rng
        code, code_type, trip_prefix, departures = rng.pick(CARRIERS)
        departure = rng.pick(departures)
        trip = f"{trip_prefix}{100 + rng.below(900)}"
        day = FIRST_ARRIVAL_DAY + rng.below(ARRIVAL_DAYS)
        arrival_minute = 6 * 60 + rng.below(17 * 60)
        port = rng.pick(PORTS)
        flight_minutes = 420 + rng.below(480)
        eastern = -240 if eastern_dst(day) else -300
        y, mo, d = civil(day)

        arrival_local = day * 1440 + arrival_minute
        arrival_utc = arrival_local - eastern
        dep_offset = UTC_OFFSET.get(departure, 0)
        out = [
            '{"schema":"manifest/v1","manifest_id":"',
            f"{code}-{y:04d}{mo:02d}{d:02d}-{trip}-{self.seq:06d}",
            '","carrier":{"code":"', code, '","code_type":"', code_type,
            '"},"trip":{"number":"', trip, '","departure_country":"', departure,
            '","departure_time":"', rfc3339(arrival_utc - flight_minutes + dep_offset, dep_offset),
            '","port_of_arrival":"', port,
            '","arrival_time":"', rfc3339(arrival_local, eastern),
            '"},"packages":[',
        ]

        local = [s for s in SHIPPERS if s[1] == departure]
        serial_start = rng.below(100_000_000)
        multiplier = rng.pick(SERIAL_MULTIPLIERS)
        service = rng.pick(SERVICES)
        last_consignee = ""
        for i in range(packages):
            if i > 0:
                out.append(",")
            # Skewed picks (minimum of two draws) so that some shippers recur often.
            if local and rng.below(100) < 75:
                a = rng.below(len(local))
                b = rng.below(len(local))
                name, country = local[min(a, b)]
            else:
                a = rng.below(len(SHIPPERS))
                b = rng.below(len(SHIPPERS))
                name, country = SHIPPERS[min(a, b)]
            bad = 1 + rng.below(3) if rng.chance_ppm(self.bad_ppm) else 0
            serial = (serial_start + i) * multiplier % 100_000_000
            check = s10_check_digit(serial)
            if bad == 1:
                check = (check + 1 + rng.below(9)) % 10
            out.append(f'{{"tracking_number":"{service}{serial:08d}{check}{country}"')
            category = rng.below(100)
            if category < 80:
                out.append(',"category":"merchandise"')
            elif category < 90:
                out.append(',"category":"gift"')
            elif category < 98:
                pass  # no category: merchandise by default
            else:
                out.append(',"category":"commercial_sample"')
            out.append(f',"shipper":{{"name":"{name}","country":"{country}"}},"consignee":')
            if last_consignee and rng.below(100) < 5:
                pass  # the same consignee again: a split shipment
            else:
                first = rng.pick(FIRST_NAMES)
                last = rng.pick(LAST_NAMES)
                number = 1 + rng.below(9_999)
                street = rng.pick(STREETS)
                city, state, zip_base = rng.pick(CITIES)
                zip_code = zip_base + rng.below(40)
                last_consignee = (
                    f'{{"name":"{first} {last}","address":{{"line1":"{number} {street}",'
                    f'"city":"{city}","state":"{state}","postal_code":"{zip_code:05d}","country":"US"}}}}'
                )
            out.append(last_consignee)
            grams = 250 + rng.below(4_751)
            out.append(f',"weight_kg":"{grams // 1000}.{grams % 1000:03d}","items":[')
            r = rng.below(100)
            n_items = 1 if r <= 59 else 2 if r <= 87 else 3
            for j in range(n_items):
                if j > 0:
                    out.append(",")
                hts, descriptions, min_cents, max_cents = rng.pick(PRODUCTS)
                if rng.below(100) < 3:
                    description = rng.pick(VAGUE)
                else:
                    description = rng.pick(descriptions)
                if country in ORIGINS and rng.below(100) < 70:
                    origin = country
                else:
                    origin = rng.pick(ORIGINS)
                if bad == 2 and j == 0:
                    origin = "XX"
                quantity = 1 if rng.below(100) < 70 else 2 + rng.below(3)
                usd_cents = min_cents + rng.below(max_cents - min_cents + 1)
                home = {"DE": "EUR", "FR": "EUR", "GB": "GBP", "JP": "JPY"}.get(country, "USD")
                if home != "USD" and rng.below(2) == 0:
                    currency = home
                else:
                    r = rng.below(100)
                    currency = "USD" if r <= 74 else "EUR" if r <= 86 else "GBP" if r <= 94 else "JPY"
                as_number = rng.below(100) < 20
                negative = bad == 3 and j == 0
                if currency == "JPY":
                    yen = usd_cents * 147 // 100
                    text = str(-yen if negative else yen)
                else:
                    per_usd = {"EUR": 86, "GBP": 74}.get(currency, 100)
                    cents = usd_cents * per_usd // 100
                    text = hundredths(-cents if negative else cents, as_number)
                value = text if as_number else f'"{text}"'
                out.append(
                    f'{{"description":"{description}","hts":"{hts}","origin_country":"{origin}",'
                    f'"quantity":{quantity},"value":{value},"currency":"{currency}"}}'
                )
            out.append("]")
            if rng.below(100) < 10:
                # A carrier's own field, ignored by the pipeline.
                out.append(f',"x_bag":"B{rng.below(10_000):04d}"')
            out.append("}")
        out.append("]}")
        return "".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=1000, help="number of manifests (lines)")
    parser.add_argument("--packages", type=int, default=50, help="packages per manifest (1-10000)")
    parser.add_argument("--seed", type=int, default=1, help="PRNG seed (same seed, same output)")
    parser.add_argument("--bad-rate", type=float, default=0.02,
                        help="share of packages made invalid on purpose (default 0.02)")
    args = parser.parse_args()
    if args.manifests < 0 or not 1 <= args.packages <= 10_000:
        parser.error("--manifests must be >= 0 and --packages within 1..10000")
    if not 0.0 <= args.bad_rate <= 1.0:
        parser.error("--bad-rate must be within 0..1")

    gen = Generator(args.seed, args.bad_rate)
    out = sys.stdout.buffer
    try:
        for _ in range(args.manifests):
            out.write(gen.manifest(args.packages).encode("utf-8"))
            out.write(b"\n")
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()


if __name__ == "__main__":
    main()
