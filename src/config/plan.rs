//! Price plans (design §3): what a seller configured for a billing factor in Seller Console.
//!
//! A plan is validated once, at load: a [`Plan`] that exists is usable, so pricing code never
//! re-checks tiers. Errors name the plan and the key so the seller knows where to look.
//!
//! `aggregation` (issue 14, see [`Aggregation`]) defaults to `sum`. Refused at load: an unknown
//! name; `unique_by` missing on a `unique_count` plan or present on any other; `package = "stop"`
//! with an aggregation other than `sum` or `count` (a stop package is drawn down event by event
//! at ingest, which needs each event's share of the window fixed when it arrives — a maximum,
//! a latest value, a distinct count or a level's integral is only known once the window closes).
//! Every aggregation of issue 14 is built, `weighted_sum` included.

use crate::model::{Aggregation, Period};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a record's charge is computed. The config (and every output that shows the mode)
/// spells them `fixed`, `tier` and `step`, the KooGallery names; the code names what they do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pricing", rename_all = "lowercase")]
pub enum Pricing {
    /// usage × price.
    Fixed { price: Decimal },
    /// Volume pricing (config `tier`): the whole record is charged at the price of the first
    /// tier whose bound holds it.
    #[serde(rename = "tier")]
    Volume { tiers: Vec<Tier> },
    /// Graduated pricing (config `step`) over the accumulation period: each part of the
    /// cumulative usage is charged at the price of the tier it falls in.
    #[serde(rename = "step")]
    Graduated { tiers: Vec<Tier>, accumulation: Accumulation },
}

/// One price bracket; `up_to = None` only on the last, open-ended tier. Bounds are inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(
        default,
        serialize_with = "rust_decimal::serde::str_option::serialize",
        deserialize_with = "super::exact::decimal_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub up_to: Option<Decimal>,
    #[serde(serialize_with = "rust_decimal::serde::str::serialize", deserialize_with = "super::exact::decimal")]
    pub price: Decimal,
}

/// Over which span step usage accumulates before the tiers start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accumulation {
    Period,
    Day,
    Month,
}

/// How prepaid packages bought for an instance of this plan are used (design §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageMode {
    Stop,
    Payg,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub name: String,
    pub factor: String,
    pub unit: String,
    pub period: Period,
    #[serde(flatten)]
    pub pricing: Pricing,
    pub currency: String,
    pub package: Option<PackageMode>,
    /// How a window's events become its value; `sum` unless configured.
    #[serde(skip_serializing_if = "Aggregation::is_sum")]
    pub aggregation: Aggregation,
    /// The event property whose distinct values a `unique_count` plan counts; `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_by: Option<String>,
}

/// A plan as written in `meterd.toml`, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanToml {
    pub name: String,
    pub factor: String,
    #[serde(default)]
    pub unit: String,
    pub period: Period,
    pub pricing: String,
    #[serde(default)]
    pub accumulation: Option<Accumulation>,
    #[serde(default)]
    pub tiers: Option<Vec<Tier>>,
    #[serde(default, deserialize_with = "super::exact::decimal_option")]
    pub price: Option<Decimal>,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub package: Option<PackageMode>,
    /// `"sum"` (default), `"count"`, `"max"`, `"latest"`, `"unique_count"`, `"weighted_sum"`.
    #[serde(default)]
    pub aggregation: Option<String>,
    /// `unique_count` only: the event property whose distinct values are counted.
    #[serde(default)]
    pub unique_by: Option<String>,
}

fn default_currency() -> String {
    "CNY".to_string()
}

impl PlanToml {
    /// Validates the plan; the error names the plan and the offending key.
    pub fn validate(self) -> Result<Plan, String> {
        let name = self.name.clone();
        let err = |key: &str, msg: String| format!("plan {name:?}: `{key}`: {msg}");
        if self.name.is_empty() {
            return Err("a [[plan]] has an empty `name`; give every plan a unique name".into());
        }
        if self.factor.is_empty() {
            return Err(err("factor", "must name the billing factor (e.g. \"api_calls\")".into()));
        }
        let pricing = match self.pricing.as_str() {
            "fixed" => {
                let price = self.price.ok_or_else(|| err("price", "fixed pricing needs `price = \"0.01\"`".into()))?;
                check_price(price).map_err(|m| err("price", m))?;
                if self.tiers.is_some() {
                    return Err(err("tiers", "fixed pricing takes `price`, not `tiers`".into()));
                }
                Pricing::Fixed { price }
            }
            "tier" | "step" => {
                if self.price.is_some() {
                    return Err(err("price", format!("{} pricing takes `tiers`, not `price`", self.pricing)));
                }
                let tiers = self.tiers.clone().unwrap_or_default();
                check_tiers(&tiers).map_err(|m| err("tiers", m))?;
                if self.pricing == "tier" {
                    Pricing::Volume { tiers }
                } else {
                    Pricing::Graduated { tiers, accumulation: self.accumulation.unwrap_or(Accumulation::Month) }
                }
            }
            other => return Err(err("pricing", format!("unknown mode {other:?}; use \"fixed\", \"tier\" or \"step\""))),
        };
        if !matches!(pricing, Pricing::Graduated { .. }) && self.accumulation.is_some() {
            return Err(err("accumulation", "only step pricing accumulates; remove it or use pricing = \"step\"".into()));
        }
        let aggregation = self.check_aggregation().map_err(|(key, m)| err(key, m))?;
        Ok(Plan {
            name: self.name,
            factor: self.factor,
            unit: self.unit,
            period: self.period,
            pricing,
            currency: self.currency,
            package: self.package,
            aggregation,
            unique_by: self.unique_by,
        })
    }

    /// The `aggregation` and the keys that depend on it; the error names the key.
    fn check_aggregation(&self) -> Result<Aggregation, (&'static str, String)> {
        let agg = match self.aggregation.as_deref() {
            None => Aggregation::Sum,
            Some(name) => Aggregation::parse(name).ok_or_else(|| {
                let names: Vec<String> = Aggregation::ALL.iter().map(|a| format!("{:?}", a.as_str())).collect();
                ("aggregation", format!("unknown aggregation {name:?}; use one of {}", names.join(", ")))
            })?,
        };
        match (agg, &self.unique_by) {
            (Aggregation::UniqueCount, None) => {
                return Err(("unique_by", "a unique_count plan must name the event property it counts, e.g. unique_by = \"user\"".into()))
            }
            (Aggregation::UniqueCount, Some(p)) if !crate::model::valid_property_key(p) => {
                return Err(("unique_by", format!("{p:?} is not a property name: 1–64 characters of [A-Za-z0-9_.-]")))
            }
            (Aggregation::UniqueCount, Some(_)) | (_, None) => {}
            (other, Some(_)) => {
                return Err((
                    "unique_by",
                    format!(
                    "only aggregation = \"unique_count\" counts a property; remove `unique_by` or change the aggregation (it is {other:?})",
                    other = other.as_str()
                ),
                ))
            }
        }
        if self.package == Some(PackageMode::Stop) && !agg.is_additive() {
            return Err((
                "package",
                format!(
                    "package = \"stop\" works with aggregation \"sum\" or \"count\" only: a stop package is drawn down as each event arrives, but a {} value is only known when the window closes. Use package = \"payg\" or another aggregation",
                    agg.as_str()
                ),
            ));
        }
        Ok(agg)
    }
}

fn check_price(p: Decimal) -> Result<(), String> {
    if p.is_sign_negative() && !p.is_zero() {
        return Err(format!("price {p} is negative; prices are ≥ 0"));
    }
    Ok(())
}

fn check_tiers(tiers: &[Tier]) -> Result<(), String> {
    if tiers.is_empty() {
        return Err("no tiers; write e.g. tiers = [ { up_to = \"3\", price = \"0.3\" }, { price = \"0.2\" } ]".into());
    }
    let mut last: Option<Decimal> = None;
    for (i, t) in tiers.iter().enumerate() {
        check_price(t.price).map_err(|m| format!("tier {}: {m}", i + 1))?;
        let is_last = i + 1 == tiers.len();
        match (t.up_to, is_last) {
            (None, false) => return Err(format!("tier {} has no `up_to`; only the last tier is open-ended", i + 1)),
            (Some(_), true) => return Err(format!("the last tier (tier {}) must be open-ended: remove its `up_to`", i + 1)),
            (Some(b), false) => {
                if b <= Decimal::ZERO || last.is_some_and(|l| b <= l) {
                    return Err(format!("tier {} `up_to` = {b} must be positive and greater than the tier before", i + 1));
                }
                last = Some(b);
            }
            (None, true) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Plan, String> {
        let p: PlanToml = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        p.validate()
    }

    #[test]
    fn good_plans() {
        let p = parse(
            r#"name="calls"
factor="api_calls"
period="hour"
pricing="step"
accumulation="month"
tiers=[{up_to="3",price="0.3"},{price="0.2"}]"#,
        )
        .unwrap();
        assert!(matches!(p.pricing, Pricing::Graduated { accumulation: Accumulation::Month, .. }));
        let p = parse("name=\"s\"\nfactor=\"gb\"\nperiod=\"day\"\npricing=\"fixed\"\nprice=\"0.0125\"").unwrap();
        assert_eq!(p.pricing, Pricing::Fixed { price: "0.0125".parse().unwrap() });
    }

    #[test]
    fn outputs_keep_the_config_spellings_of_the_modes() {
        // The code says Volume/Graduated; users read and write `tier`/`step`.
        let v = serde_json::to_value(Pricing::Volume { tiers: vec![] }).unwrap();
        assert_eq!(v["pricing"], "tier");
        let g = serde_json::to_value(Pricing::Graduated { tiers: vec![], accumulation: Accumulation::Month }).unwrap();
        assert_eq!(g["pricing"], "step");
    }

    #[test]
    fn bad_plans_name_plan_and_key() {
        let cases = [
            ("pricing=\"tier\"\ntiers=[]", "`tiers`"),
            ("pricing=\"tier\"", "`tiers`"),
            ("pricing=\"tier\"\ntiers=[{up_to=\"5\",price=\"1\"},{up_to=\"3\",price=\"1\"},{price=\"1\"}]", "greater"),
            ("pricing=\"tier\"\ntiers=[{up_to=\"5\",price=\"1\"},{up_to=\"6\",price=\"1\"}]", "open-ended"),
            ("pricing=\"fixed\"\nprice=\"-1\"", "`price`"),
            ("pricing=\"tier\"\ntiers=[{price=\"-0.1\"}]", "negative"),
            ("pricing=\"volume\"", "`pricing`"),
            ("pricing=\"fixed\"", "`price`"),
        ];
        for (body, needle) in cases {
            let text = format!("name=\"p1\"\nfactor=\"f\"\nperiod=\"hour\"\n{body}");
            let err = parse(&text).unwrap_err();
            assert!(err.contains("\"p1\"") && err.contains(needle), "{body}: {err}");
        }
    }
}
