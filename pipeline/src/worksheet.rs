//! `dutyflow worksheet`: the monthly International Mail Duty worksheet of one carrier, from the
//! store. Page 1 is the summary CBP asks for (the qualified party from `config/carriers.csv`,
//! method, package count, total value, total duty, due date); page 2 has one row per item line.

use crate::store::{Store, TotalsRow, WorksheetLine};
use crate::totals::money;
use anyhow::{bail, Result};
use dutyflow_operators::rates::Month;
use dutyflow_operators::table::DataFile;
use dutyflow_operators::Operators;
use std::io::Write;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Both pages as text.
    Text,
    /// Page 2 as CSV (page 1 is in the header comment lines).
    Csv,
    /// Both pages as one JSON document.
    Json,
}

/// The qualified party behind a carrier code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub code: String,
    pub code_type: String,
    pub name: String,
    pub tax_id: String,
    pub contact: String,
}

/// Reads `carriers.csv` of the config directory; a missing file gives no parties.
pub fn parties(ops: &Operators) -> Result<Vec<Party>> {
    let path = ops.config_dir.join("carriers.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = DataFile::read(&path)?;
    let rows = file.csv(&["code", "code_type", "name", "tax_id", "contact"])?;
    Ok(rows
        .iter()
        .map(|r| Party {
            code: r.fields[0].to_string(),
            code_type: r.fields[1].to_string(),
            name: r.fields[2].to_string(),
            tax_id: r.fields[3].to_string(),
            contact: r.fields[4].to_string(),
        })
        .collect())
}

/// Page 1 and page 2 of one carrier's month.
pub struct Worksheet {
    pub party: Option<Party>,
    pub carrier: String,
    pub month: Month,
    pub due_date: chrono::NaiveDate,
    pub methods: Vec<String>,
    pub packages: i64,
    pub item_lines: i64,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    pub rejected_packages: i64,
    pub lines: Vec<WorksheetLine>,
}

pub fn build(store: &Store, ops: &Operators, carrier: &str, month: &str) -> Result<Worksheet> {
    let Some(m) = Month::parse(month) else {
        bail!("--month \"{month}\" is not a month; write it as YYYY-MM, e.g. 2026-03");
    };
    let rows: Vec<TotalsRow> = store.totals(Some(carrier), Some(month))?;
    if rows.is_empty() {
        bail!("the store has no totals for carrier {carrier} in {month}; check the carrier code and the month with `dutyflow totals`");
    }
    let party = parties(ops)?.into_iter().find(|p| p.code == carrier);
    let mut methods: Vec<String> = rows
        .iter()
        .filter(|r| r.packages > 0)
        .map(|r| r.method.clone())
        .collect();
    methods.sort();
    methods.dedup();
    let sum = |f: fn(&TotalsRow) -> i64| rows.iter().map(f).sum::<i64>();
    Ok(Worksheet {
        party,
        carrier: carrier.to_string(),
        month: m,
        due_date: ops.calendar.due_date(m),
        methods,
        packages: sum(|r| r.packages),
        item_lines: sum(|r| r.item_lines),
        value_cents: sum(|r| r.value_cents),
        duty_cents: sum(|r| r.duty_cents),
        fees_cents: sum(|r| r.fees_cents),
        rejected_packages: sum(|r| r.rejected_packages),
        lines: store.worksheet_lines(carrier, month)?,
    })
}

/// Page 2 columns of one item line, in order.
fn line_fields(l: &WorksheetLine) -> [String; 9] {
    [
        l.carrier.clone(),
        l.trip_number.clone(),
        l.tracking_number.clone(),
        l.port_of_arrival.clone(),
        l.arrival_date.clone(),
        money(l.value_cents),
        l.origin_country.clone(),
        l.rate.clone(),
        money(l.duty_cents),
    ]
}

impl Worksheet {
    fn party_field(&self, f: fn(&Party) -> &str) -> &str {
        self.party.as_ref().map_or("(not in config/carriers.csv)", f)
    }

    pub fn print(&self, out: &mut dyn Write, format: Format) -> Result<()> {
        match format {
            Format::Text => self.text(out),
            Format::Csv => self.csv(out),
            Format::Json => {
                writeln!(out, "{}", serde_json::to_string_pretty(&self.json())?)?;
                Ok(())
            }
        }
    }

    fn text(&self, out: &mut dyn Write) -> Result<()> {
        writeln!(
            out,
            "International Mail Duty worksheet: {} {}",
            self.carrier, self.month
        )?;
        writeln!(out, "Page 1")?;
        writeln!(out, "  qualified party   {}", self.party_field(|p| &p.name))?;
        writeln!(out, "  tax ID            {}", self.party_field(|p| &p.tax_id))?;
        writeln!(
            out,
            "  carrier code      {} ({})",
            self.carrier,
            self.party_field(|p| &p.code_type)
        )?;
        writeln!(out, "  contact           {}", self.party_field(|p| &p.contact))?;
        writeln!(out, "  month             {}", self.month)?;
        writeln!(out, "  method            {}", self.methods.join(", "))?;
        writeln!(out, "  packages          {}", self.packages)?;
        writeln!(out, "  total value USD   {}", money(self.value_cents))?;
        writeln!(out, "  total duty USD    {}", money(self.duty_cents))?;
        if self.fees_cents != 0 {
            writeln!(out, "  fees USD          {}", money(self.fees_cents))?;
        }
        writeln!(
            out,
            "  due               {} (7th business day of the next month)",
            self.due_date
        )?;
        writeln!(
            out,
            "  rejected packages {} (not on the worksheet)",
            self.rejected_packages
        )?;
        writeln!(out)?;
        writeln!(out, "Page 2: {} item line(s)", self.lines.len())?;
        writeln!(
            out,
            "  {:<8} {:<10} {:<15} {:<6} {:<10} {:>14} {:<6} {:>10} {:>12}",
            "carrier", "trip", "tracking", "port", "arrival", "value USD", "origin", "rate", "duty USD"
        )?;
        for l in &self.lines {
            let f = line_fields(l);
            writeln!(
                out,
                "  {:<8} {:<10} {:<15} {:<6} {:<10} {:>14} {:<6} {:>10} {:>12}",
                f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
            )?;
        }
        Ok(())
    }

    fn csv(&self, out: &mut dyn Write) -> Result<()> {
        writeln!(
            out,
            "# carrier={} month={} method={} packages={} value_usd={} duty_usd={} due_date={}",
            self.carrier,
            self.month,
            self.methods.join("+"),
            self.packages,
            money(self.value_cents),
            money(self.duty_cents),
            self.due_date
        )?;
        writeln!(
            out,
            "carrier,trip_number,tracking_number,port_of_arrival,arrival_date,value_usd,origin_country,rate,duty_usd"
        )?;
        for l in &self.lines {
            writeln!(out, "{}", line_fields(l).join(","))?;
        }
        Ok(())
    }

    fn json(&self) -> serde_json::Value {
        let lines: Vec<serde_json::Value> = self
            .lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "carrier": l.carrier, "trip_number": l.trip_number, "tracking_number": l.tracking_number,
                    "port_of_arrival": l.port_of_arrival, "arrival_date": l.arrival_date,
                    "value_usd": money(l.value_cents), "origin_country": l.origin_country,
                    "rate": l.rate, "duty_usd": money(l.duty_cents),
                })
            })
            .collect();
        serde_json::json!({
            "page1": {
                "qualified_party": self.party.as_ref().map(|p| &p.name),
                "tax_id": self.party.as_ref().map(|p| &p.tax_id),
                "carrier_code": self.carrier,
                "code_type": self.party.as_ref().map(|p| &p.code_type),
                "contact": self.party.as_ref().map(|p| &p.contact),
                "month": self.month.to_string(),
                "methods": self.methods,
                "packages": self.packages,
                "item_lines": self.item_lines,
                "total_value_usd": money(self.value_cents),
                "total_duty_usd": money(self.duty_cents),
                "fees_usd": money(self.fees_cents),
                "rejected_packages": self.rejected_packages,
                "due_date": self.due_date.to_string(),
            },
            "page2": lines,
        })
    }
}
