//! `dutyflow totals`: the monthly totals as a table, CSV or JSON, with each month's due date.

use crate::store::TotalsRow;
use anyhow::Result;
use dutyflow_operators::rates::Month;
use dutyflow_operators::Operators;
use std::io::Write;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Cents as a decimal string with two places.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn due(ops: &Operators, month: &str) -> String {
    Month::parse(month)
        .map(|m| ops.calendar.due_date(m).to_string())
        .unwrap_or_default()
}

pub fn print(out: &mut dyn Write, rows: &[TotalsRow], ops: &Operators, format: Format) -> Result<()> {
    match format {
        Format::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "carrier": r.carrier, "month": r.month, "regime": r.regime, "method": r.method,
                        "packages": r.packages, "item_lines": r.item_lines,
                        "value_usd": money(r.value_cents), "duty_usd": money(r.duty_cents), "fees_usd": money(r.fees_cents),
                        "rejected_packages": r.rejected_packages, "due_date": due(ops, &r.month),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Format::Csv => {
            writeln!(out, "carrier,month,regime,method,packages,item_lines,value_usd,duty_usd,fees_usd,rejected_packages,due_date")?;
            for r in rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    r.carrier,
                    r.month,
                    r.regime,
                    r.method,
                    r.packages,
                    r.item_lines,
                    money(r.value_cents),
                    money(r.duty_cents),
                    money(r.fees_cents),
                    r.rejected_packages,
                    due(ops, &r.month)
                )?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:<8} {:<7} {:<24} {:<10} {:>9} {:>9} {:>16} {:>14} {:>10} {:>9} {:<10}",
                "carrier",
                "month",
                "regime",
                "method",
                "packages",
                "lines",
                "value USD",
                "duty USD",
                "fees USD",
                "rejected",
                "due"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:<8} {:<7} {:<24} {:<10} {:>9} {:>9} {:>16} {:>14} {:>10} {:>9} {:<10}",
                    r.carrier,
                    r.month,
                    r.regime,
                    r.method,
                    r.packages,
                    r.item_lines,
                    money(r.value_cents),
                    money(r.duty_cents),
                    money(r.fees_cents),
                    r.rejected_packages,
                    due(ops, &r.month)
                )?;
            }
            if rows.is_empty() {
                writeln!(out, "(no totals yet)")?;
            }
        }
    }
    Ok(())
}
