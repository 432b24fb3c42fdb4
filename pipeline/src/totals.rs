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

/// The columns of one totals row, in order, as text.
fn fields(r: &TotalsRow, ops: &Operators) -> [String; 11] {
    [
        r.carrier.clone(),
        r.month.clone(),
        r.regime.clone(),
        r.method.clone(),
        r.packages.to_string(),
        r.item_lines.to_string(),
        money(r.value_cents),
        money(r.duty_cents),
        money(r.fees_cents),
        r.rejected_packages.to_string(),
        due(ops, &r.month),
    ]
}

fn table_line(out: &mut dyn Write, f: &[String; 11]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<8} {:<7} {:<24} {:<10} {:>9} {:>9} {:>16} {:>14} {:>10} {:>9} {:<10}",
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
    )
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
                writeln!(out, "{}", fields(r, ops).join(","))?;
            }
        }
        Format::Table => {
            let header = [
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
                "due",
            ];
            table_line(out, &header.map(String::from))?;
            for r in rows {
                table_line(out, &fields(r, ops))?;
            }
            if rows.is_empty() {
                writeln!(out, "(no totals yet)")?;
            }
        }
    }
    Ok(())
}
