//! Duty assessment: arithmetic on a validated package under the regime in force.
//!
//! Invariants: every line is rounded half-up to the cent; the package total is the sum of its
//! lines plus fees; exempt packages are assessed too, at zero, with the reason.

use crate::model::{Category, Header, Package};
use crate::money::{add_round_cents, cmp_amounts, mul_round_cents, round_cents, sum_money};
use crate::rates::{Method, Regime};
use crate::reference::Country;
use crate::small::SmallList;
use rust_decimal::Decimal;

/// Why a package owes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// A bona fide gift valued at or below the regime's gift exemption.
    Gift,
    /// Personal correspondence and informational materials.
    Documents,
}

impl Exemption {
    pub const fn as_str(self) -> &'static str {
        match self {
            Exemption::Gift => "gift",
            Exemption::Documents => "documents",
        }
    }
}

/// One assessed item line (a row of the worksheet's page 2).
/// (`Default` only fills the unused slots of a [`SmallList`].)
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Line<'a> {
    pub item: u32,
    pub origin: Country,
    pub hts: Option<&'a str>,
    pub value_usd: Decimal,
    pub rate: Decimal,
    pub duty_usd: Decimal,
}

/// The duty on one package.
#[derive(Debug, Clone, PartialEq)]
pub struct Duty<'a> {
    pub regime: usize,
    pub method: Method,
    pub exemption: Option<Exemption>,
    /// In place up to two lines (most packages), on the heap beyond.
    pub lines: SmallList<Line<'a>, 2>,
    pub value_usd: Decimal,
    pub fees_usd: Decimal,
    pub total_usd: Decimal,
}

/// Assesses an accepted package. `header.regime` must be set (validation guarantees it for
/// accepted packages).
pub fn assess<'a>(regimes: &[Regime], header: &Header<'_>, pkg: &Package<'a>) -> Option<Duty<'a>> {
    let mut duty = None;
    assess_into(regimes, header, pkg, &mut duty);
    duty
}

/// [`assess`], written into `slot` (the package's outcome: the duty is built where it stays).
pub(crate) fn assess_into<'a>(regimes: &[Regime], header: &Header<'_>, pkg: &Package<'a>, slot: &mut Option<Duty<'a>>) {
    *slot = None;
    let Some(ri) = header.regime else {
        return;
    };
    let regime = &regimes[ri];
    let value_usd = pkg.value_usd();
    let exemption = match pkg.category {
        Category::Documents => Some(Exemption::Documents),
        Category::Gift if cmp_amounts(value_usd, regime.gift_exemption_usd).is_le() => Some(Exemption::Gift),
        _ => None,
    };
    let d = slot.insert(Duty {
        regime: ri,
        method: Method::AdValorem,
        exemption,
        lines: SmallList::new(),
        value_usd,
        fees_usd: Decimal::ZERO,
        total_usd: Decimal::ZERO,
    });
    for it in pkg.items.iter() {
        d.lines.push(Line {
            item: it.index,
            origin: it.origin,
            hts: it.hts,
            value_usd: it.value_usd,
            rate: it.rate,
            duty_usd: Decimal::ZERO,
        });
    }
    let lines = &mut d.lines;

    d.method = if exemption.is_some() {
        for l in lines.iter_mut() {
            l.rate = Decimal::ZERO;
        }
        Method::Exempt
    } else if header.method == Method::Specific {
        // The highest origin rate picks the band; the flat amount sits on that line.
        let (deciding, rate) =
            lines.iter().enumerate().fold(
                (0, Decimal::MIN),
                |best, (i, l)| {
                    if l.rate > best.1 {
                        (i, l.rate)
                    } else {
                        best
                    }
                },
            );
        match regime.specific_amount(rate) {
            Some(amount) => lines[deciding].duty_usd = amount,
            None => {
                *slot = None;
                return;
            }
        }
        Method::Specific
    } else {
        for l in lines.iter_mut() {
            l.duty_usd = mul_round_cents(l.value_usd, l.rate);
        }
        Method::AdValorem
    };
    d.fees_usd = if exemption.is_some() {
        Decimal::ZERO
    } else {
        round_cents(regime.fees_usd)
    };
    let duty = sum_money(d.lines.iter().map(|l| l.duty_usd));
    d.total_usd = add_round_cents(duty, d.fees_usd);
}
