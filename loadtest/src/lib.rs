//! A deterministic generator of realistic `manifest/v1` messages, for benchmarks and load tests.
//!
//! Every manifest is one compact line of JSON. The same seed always gives the same bytes, and
//! `loadtest/gen_manifests.py` implements the same algorithm (same PRNG, same draws in the same
//! order), so `Generator::new(seed, bad_rate)` and `gen_manifests.py --seed seed --bad-rate
//! bad_rate` write identical manifests.
//!
//! What the manifests hold: five carriers (IATA LH/AF/UA, ICAO DLH, SCAC ABCD), departures from
//! the countries those carriers fly from, arrival times spread over 2025-09-01..2026-11-30 (all
//! three rate regimes) with the right US Eastern offset, repeated shippers, consignees with US
//! addresses, 1–3 items per package with 10-digit HTS numbers of the postal-entry table, values
//! as strings and sometimes as JSON numbers, USD/EUR/GBP/JPY, valid and unique UPU S10 tracking
//! numbers, and a share of bad packages (wrong check digit, unknown country `XX`, negative
//! value) set by `bad_rate`.

/// splitmix64: a tiny, fast, well-mixed PRNG; plenty for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `ppm` / 1,000,000.
    pub fn chance_ppm(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct Carrier {
    code: &'static str,
    code_type: &'static str,
    /// Prefix of the trip number.
    trip_prefix: &'static str,
    departures: &'static [&'static str],
}

const CARRIERS: &[Carrier] = &[
    Carrier {
        code: "LH",
        code_type: "iata",
        trip_prefix: "LH",
        departures: &["DE"],
    },
    Carrier {
        code: "AF",
        code_type: "iata",
        trip_prefix: "AF",
        departures: &["FR"],
    },
    Carrier {
        code: "UA",
        code_type: "iata",
        trip_prefix: "UA",
        departures: &["GB", "JP", "KR", "TW", "DE"],
    },
    Carrier {
        code: "DLH",
        code_type: "icao",
        trip_prefix: "DLH",
        departures: &["DE", "IN"],
    },
    Carrier {
        code: "ABCD",
        code_type: "scac",
        trip_prefix: "ABCD-",
        departures: &["CN", "VN", "TH", "MX", "CA", "BR"],
    },
];

/// Standard UTC offset (minutes) of each departure country, for `departure_time`.
fn utc_offset_minutes(country: &str) -> i64 {
    match country {
        "DE" | "FR" => 60,
        "GB" => 0,
        "JP" | "KR" => 540,
        "CN" | "TW" => 480,
        "VN" | "TH" => 420,
        "IN" => 330,
        "MX" => -360,
        "CA" => -300,
        "BR" => -180,
        _ => 0,
    }
}

/// US ports of arrival for international mail (4 digits).
const PORTS: &[&str] = &["4701", "2720", "3901", "1704", "5206", "2809", "3029", "1303"];

/// Origins of goods.
const ORIGINS: &[&str] = &[
    "CN", "VN", "DE", "GB", "JP", "IN", "MX", "CA", "BR", "FR", "KR", "TW", "TH",
];

/// Shippers: name and country. A package usually comes from a shipper of its departure country.
const SHIPPERS: &[(&str, &str)] = &[
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
];

/// A kind of goods: its 10-digit HTS line (from `hts_postal_entry_2026.csv`), descriptions,
/// and the usual value range of one item in US cents.
struct Product {
    hts: &'static str,
    descriptions: &'static [&'static str],
    min_cents: u64,
    max_cents: u64,
}

const PRODUCTS: &[Product] = &[
    Product {
        hts: "6109100012",
        descriptions: &[
            "Men's cotton T-shirt",
            "Cotton T-shirt, printed",
            "Boys' knitted cotton tee",
        ],
        min_cents: 800,
        max_cents: 6_000,
    },
    Product {
        hts: "6110202079",
        descriptions: &[
            "Cotton pullover sweater",
            "Knitted cotton cardigan",
            "Women's cotton sweater",
        ],
        min_cents: 2_500,
        max_cents: 12_000,
    },
    Product {
        hts: "8517130000",
        descriptions: &["Smartphone 128GB", "Mobile phone, unlocked", "Refurbished smartphone"],
        min_cents: 9_000,
        max_cents: 90_000,
    },
    Product {
        hts: "6404199060",
        descriptions: &[
            "Canvas sneakers",
            "Textile running shoes",
            "Slip-on shoes, textile upper",
        ],
        min_cents: 2_000,
        max_cents: 15_000,
    },
    Product {
        hts: "4202221500",
        descriptions: &["PVC handbag", "Plastic-coated tote bag", "Clutch bag, plastic sheeting"],
        min_cents: 1_500,
        max_cents: 9_000,
    },
    Product {
        hts: "3304990000",
        descriptions: &[
            "Face cream 50ml",
            "Lipstick set",
            "Sheet masks, pack of 10",
            "Foundation makeup",
        ],
        min_cents: 600,
        max_cents: 8_000,
    },
    Product {
        hts: "9503000090",
        descriptions: &[
            "Plastic building blocks",
            "Plush toy bear",
            "Wooden puzzle",
            "Toy car set",
        ],
        min_cents: 500,
        max_cents: 6_000,
    },
    Product {
        hts: "6117100000",
        descriptions: &["Hand-knitted scarf", "Wool shawl", "Knitted muffler"],
        min_cents: 1_200,
        max_cents: 9_000,
    },
    Product {
        hts: "8471300100",
        descriptions: &["Laptop computer 14in", "Notebook PC", "Used laptop"],
        min_cents: 25_000,
        max_cents: 150_000,
    },
];

/// Descriptions that raise the vague-description risk signal.
const VAGUE: &[&str] = &["Gift", "Parts", "Goods", "Clothes", "Sample", "Personal effects"];

const FIRST_NAMES: &[&str] = &[
    "Jane", "John", "Maria", "James", "Wei", "Priya", "Carlos", "Emily", "Michael", "Aisha", "David", "Sofia",
    "Daniel", "Linh", "Olivia", "Kenji", "Fatima", "Robert", "Grace", "Luis",
];
const LAST_NAMES: &[&str] = &[
    "Doe", "Roe", "Smith", "Johnson", "Garcia", "Nguyen", "Chen", "Patel", "Kim", "Brown", "Martinez", "Lee",
    "Williams", "O'Brien", "Schmidt", "Tanaka", "Davis", "Lopez", "Wilson",
];
const STREETS: &[&str] = &[
    "Main St",
    "Elm Ave",
    "Oak Rd",
    "Maple Dr",
    "Cedar Ln",
    "Park Ave",
    "Washington Blvd",
    "Lake St",
    "Hill Rd",
    "2nd Ave",
    "Sunset Blvd",
    "Pine St",
];
/// City, state, and the first ZIP code of the city's range.
const CITIES: &[(&str, &str, u32)] = &[
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
];

/// UPU S10 service indicators (none starts with J or K).
const SERVICES: &[&str] = &["RR", "RX", "LX", "CP", "EE", "RA", "LZ", "UA", "CX", "EA"];

/// Multipliers coprime with 10: `serial = (start + i) * m mod 10^8` is a bijection, so the
/// serials of one manifest never repeat and do not look sequential.
const SERIAL_MULTIPLIERS: &[u64] = &[7_919, 104_729, 1_299_709, 15_485_863, 32_452_843];

/// The S10 check digit of an 8-digit serial.
pub fn s10_check_digit(serial: u64) -> u64 {
    const WEIGHTS: [u64; 8] = [8, 6, 4, 2, 3, 5, 9, 7];
    let mut sum = 0;
    let mut rest = serial;
    for w in WEIGHTS.iter().rev() {
        sum += (rest % 10) * w;
        rest /= 10;
    }
    match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    }
}

/// Days since 2025-01-01 of the first possible arrival date, 2025-09-01.
const FIRST_ARRIVAL_DAY: u64 = 243;
/// Number of arrival dates: 2025-09-01..=2026-11-30.
const ARRIVAL_DAYS: u64 = 456;

/// (year, month, day) of a day counted from 2025-01-01 (years 2025–2027: no leap year).
fn civil(mut day: i64) -> (i64, i64, i64) {
    const MONTH_DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut year = 2025;
    while day < 0 {
        year -= 1;
        day += 365;
    }
    while day >= 365 {
        year += 1;
        day -= 365;
    }
    let mut month = 0;
    while day >= MONTH_DAYS[month] {
        day -= MONTH_DAYS[month];
        month += 1;
    }
    (year, month as i64 + 1, day + 1)
}

/// Whether US Eastern time is on daylight time for most of that day (after 02:00).
fn eastern_dst(day: i64) -> bool {
    // 2025-11-02 = 305, 2026-03-08 = 431, 2026-11-01 = 669.
    day < 305 || (431..669).contains(&day)
}

/// RFC 3339 time of a minute counted from 2025-01-01T00:00 local, with the given offset.
fn write_time(out: &mut String, local_minute: i64, offset_minutes: i64) {
    let day = local_minute.div_euclid(1440);
    let minute = local_minute.rem_euclid(1440);
    let (y, mo, d) = civil(day);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.abs();
    out.push_str(&format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:00{sign}{:02}:{:02}",
        minute / 60,
        minute % 60,
        off / 60,
        off % 60
    ));
}

/// A decimal amount in hundredths, `trim` dropping trailing zeros as a JSON number would
/// (`9.50` → `9.5`, `40.00` → `40`).
fn hundredths(cents: i64, trim: bool) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    if !trim {
        format!("{sign}{whole}.{frac:02}")
    } else if frac == 0 {
        format!("{sign}{whole}")
    } else if frac % 10 == 0 {
        format!("{sign}{whole}.{}", frac / 10)
    } else {
        format!("{sign}{whole}.{frac:02}")
    }
}

/// Generates manifests one after another; deterministic for a given seed and bad rate.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SplitMix64,
    bad_ppm: u64,
    seq: u64,
}

impl Generator {
    /// `bad_rate`: the share of packages made invalid on purpose (0.02 = 2%).
    pub fn new(seed: u64, bad_rate: f64) -> Self {
        Generator {
            rng: SplitMix64::new(seed),
            bad_ppm: (bad_rate.clamp(0.0, 1.0) * 1_000_000.0 + 0.5) as u64,
            seq: 0,
        }
    }

    /// One manifest of `packages` packages, as one compact line of JSON (no newline).
    pub fn manifest(&mut self, packages: usize) -> String {
        let mut out = String::with_capacity(700 * packages + 400);
        self.write_manifest(&mut out, packages);
        out
    }

    /// Appends one manifest of `packages` packages to `out` (no newline).
    pub fn write_manifest(&mut self, out: &mut String, packages: usize) {
        self.seq += 1;
        let rng = &mut self.rng;
        let carrier = rng.pick(CARRIERS);
        let departure = *rng.pick(carrier.departures);
        let trip = format!("{}{}", carrier.trip_prefix, 100 + rng.below(900));
        let day = (FIRST_ARRIVAL_DAY + rng.below(ARRIVAL_DAYS)) as i64;
        let arrival_minute = 6 * 60 + rng.below(17 * 60) as i64;
        let port = *rng.pick(PORTS);
        let flight_minutes = 420 + rng.below(480) as i64;
        let eastern = if eastern_dst(day) { -240 } else { -300 };
        let (y, mo, d) = civil(day);

        out.push_str("{\"schema\":\"manifest/v1\",\"manifest_id\":\"");
        out.push_str(&format!("{}-{y:04}{mo:02}{d:02}-{trip}-{:06}", carrier.code, self.seq));
        out.push_str("\",\"carrier\":{\"code\":\"");
        out.push_str(carrier.code);
        out.push_str("\",\"code_type\":\"");
        out.push_str(carrier.code_type);
        out.push_str("\"},\"trip\":{\"number\":\"");
        out.push_str(&trip);
        out.push_str("\",\"departure_country\":\"");
        out.push_str(departure);
        out.push_str("\",\"departure_time\":\"");
        let arrival_local = day * 1440 + arrival_minute;
        let arrival_utc = arrival_local - eastern;
        let dep_offset = utc_offset_minutes(departure);
        write_time(out, arrival_utc - flight_minutes + dep_offset, dep_offset);
        out.push_str("\",\"port_of_arrival\":\"");
        out.push_str(port);
        out.push_str("\",\"arrival_time\":\"");
        write_time(out, arrival_local, eastern);
        out.push_str("\"},\"packages\":[");

        let local: Vec<&(&str, &str)> = SHIPPERS.iter().filter(|s| s.1 == departure).collect();
        let serial_start = rng.below(100_000_000);
        let multiplier = *rng.pick(SERIAL_MULTIPLIERS);
        let service = *rng.pick(SERVICES);
        let mut last_consignee = String::new();
        for i in 0..packages {
            if i > 0 {
                out.push(',');
            }
            // Skewed picks (minimum of two draws) so that some shippers recur often.
            let (name, country) = if !local.is_empty() && rng.below(100) < 75 {
                let a = rng.below(local.len() as u64);
                let b = rng.below(local.len() as u64);
                *local[a.min(b) as usize]
            } else {
                let a = rng.below(SHIPPERS.len() as u64);
                let b = rng.below(SHIPPERS.len() as u64);
                SHIPPERS[a.min(b) as usize]
            };
            let bad = if rng.chance_ppm(self.bad_ppm) {
                1 + rng.below(3)
            } else {
                0
            };
            let serial = (serial_start + i as u64) * multiplier % 100_000_000;
            let mut check = s10_check_digit(serial);
            if bad == 1 {
                check = (check + 1 + rng.below(9)) % 10;
            }
            out.push_str("{\"tracking_number\":\"");
            out.push_str(&format!("{service}{serial:08}{check}{country}"));
            out.push('"');
            let category = rng.below(100);
            if category < 80 {
                out.push_str(",\"category\":\"merchandise\"");
            } else if category < 90 {
                out.push_str(",\"category\":\"gift\"");
            } else if category < 98 {
                // No category: merchandise by default.
            } else {
                out.push_str(",\"category\":\"commercial_sample\"");
            }
            out.push_str(",\"shipper\":{\"name\":\"");
            out.push_str(name);
            out.push_str("\",\"country\":\"");
            out.push_str(country);
            out.push_str("\"},\"consignee\":");
            if !last_consignee.is_empty() && rng.below(100) < 5 {
                // The same consignee again: a split shipment.
            } else {
                let first = *rng.pick(FIRST_NAMES);
                let last = *rng.pick(LAST_NAMES);
                let number = 1 + rng.below(9_999);
                let street = *rng.pick(STREETS);
                let (city, state, zip) = *rng.pick(CITIES);
                let zip = zip as u64 + rng.below(40);
                last_consignee = format!(
                    "{{\"name\":\"{first} {last}\",\"address\":{{\"line1\":\"{number} {street}\",\"city\":\"{city}\",\"state\":\"{state}\",\"postal_code\":\"{zip:05}\",\"country\":\"US\"}}}}"
                );
            }
            out.push_str(&last_consignee);
            let grams = 250 + rng.below(4_751);
            out.push_str(&format!(
                ",\"weight_kg\":\"{}.{:03}\",\"items\":[",
                grams / 1000,
                grams % 1000
            ));
            let n_items = match rng.below(100) {
                0..=59 => 1,
                60..=87 => 2,
                _ => 3,
            };
            for j in 0..n_items {
                if j > 0 {
                    out.push(',');
                }
                let product = rng.pick(PRODUCTS);
                let description = if rng.below(100) < 3 {
                    *rng.pick(VAGUE)
                } else {
                    *rng.pick(product.descriptions)
                };
                let mut origin = if ORIGINS.contains(&country) && rng.below(100) < 70 {
                    country
                } else {
                    *rng.pick(ORIGINS)
                };
                if bad == 2 && j == 0 {
                    origin = "XX";
                }
                let quantity = if rng.below(100) < 70 { 1 } else { 2 + rng.below(3) };
                let usd_cents = product.min_cents + rng.below(product.max_cents - product.min_cents + 1);
                let home = match country {
                    "DE" | "FR" => "EUR",
                    "GB" => "GBP",
                    "JP" => "JPY",
                    _ => "USD",
                };
                let currency = if home != "USD" && rng.below(2) == 0 {
                    home
                } else {
                    match rng.below(100) {
                        0..=74 => "USD",
                        75..=86 => "EUR",
                        87..=94 => "GBP",
                        _ => "JPY",
                    }
                };
                let as_number = rng.below(100) < 20;
                let negative = bad == 3 && j == 0;
                let text = if currency == "JPY" {
                    let yen = (usd_cents * 147 / 100) as i64;
                    format!("{}", if negative { -yen } else { yen })
                } else {
                    let per_usd = match currency {
                        "EUR" => 86,
                        "GBP" => 74,
                        _ => 100,
                    };
                    let cents = (usd_cents * per_usd / 100) as i64;
                    hundredths(if negative { -cents } else { cents }, as_number)
                };
                out.push_str("{\"description\":\"");
                out.push_str(description);
                out.push_str("\",\"hts\":\"");
                out.push_str(product.hts);
                out.push_str("\",\"origin_country\":\"");
                out.push_str(origin);
                out.push_str(&format!("\",\"quantity\":{quantity},\"value\":"));
                if as_number {
                    out.push_str(&text);
                } else {
                    out.push('"');
                    out.push_str(&text);
                    out.push('"');
                }
                out.push_str(",\"currency\":\"");
                out.push_str(currency);
                out.push_str("\"}");
            }
            out.push(']');
            if rng.below(100) < 10 {
                // A carrier's own field, ignored by the pipeline.
                out.push_str(&format!(",\"x_bag\":\"B{:04}\"", rng.below(10_000)));
            }
            out.push('}');
        }
        out.push_str("]}");
    }
}

/// `count` manifests of `packages` packages each, as bytes (one compact JSON document each).
pub fn manifests(seed: u64, count: usize, packages: usize, bad_rate: f64) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(seed, bad_rate);
    (0..count).map(|_| generator.manifest(packages).into_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_matches_the_contract_example() {
        // RR 47312482 9 DE
        assert_eq!(s10_check_digit(47_312_482), 9);
        // CP 20000002 3 DE, LX 10000001 7 DE
        assert_eq!(s10_check_digit(20_000_002), 3);
        assert_eq!(s10_check_digit(10_000_001), 7);
    }

    #[test]
    fn calendar() {
        assert_eq!(civil(243), (2025, 9, 1));
        assert_eq!(civil(365 + 334 - 1), (2026, 11, 30));
        assert_eq!(civil(-1), (2024, 12, 31));
    }

    #[test]
    fn deterministic_and_unique() {
        let a = manifests(7, 3, 200, 0.02);
        let b = manifests(7, 3, 200, 0.02);
        assert_eq!(a, b);
        for m in &a {
            let text = std::str::from_utf8(m).unwrap();
            assert!(!text.contains('\n'));
            let mut seen = std::collections::HashSet::new();
            for part in text.split("\"tracking_number\":\"").skip(1) {
                assert!(seen.insert(&part[..11]), "repeated serial {}", &part[..11]);
            }
            assert_eq!(seen.len(), 200);
        }
    }
}
