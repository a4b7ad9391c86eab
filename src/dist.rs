//! Distributions of durations: service times, link latencies, injected delays.
//!
//! A [`Dist`] is validated when it is built (from TOML with [`Dist::from_toml`] or with the checked
//! constructors) and then sampled from a seeded RNG. Sampling never panics and never returns more
//! than [`MAX_SAMPLE`]: draws are computed in `f64` seconds and clamped to `0..=MAX_SAMPLE`, with NaN
//! mapped to zero, so a heavy tail (Pareto, lognormal) cannot overflow a `Duration` or stall a run.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal, Pareto};
use thiserror::Error;

use crate::units::{self, describe_value, format_duration, UnitError};

/// The largest duration a sample may take, and the largest a parameter may be given: one hour.
pub const MAX_SAMPLE: Duration = Duration::from_secs(3600);

/// How deeply mixtures may nest: a top-level dist is at depth 1, each mixture part one deeper.
pub const MAX_DEPTH: usize = 4;

/// The most parts one mixture may have.
pub const MAX_PARTS: usize = 64;

/// The largest weight a mixture part may have.
pub const MAX_WEIGHT: f64 = 1e9;

/// The 99th percentile of the standard normal distribution: a lognormal's p99 is
/// `exp(mu + Z99 * sigma)`, so `sigma = (ln p99 - ln p50) / Z99`.
pub const Z99: f64 = 2.326_347_874;

/// The kinds a dist table may name, quoted in error messages.
const KINDS: &str = "fixed, uniform, exponential, normal, lognormal, pareto, mixture";

/// How many times a truncated normal redraws a negative value before settling on zero.
const NORMAL_REDRAWS: usize = 64;

/// A distribution of durations, ready to sample.
///
/// Built through [`Dist::from_toml`] or the checked constructors, its parameters are valid; sampling
/// is total anyway (it clamps rather than panics), so a hand-built value cannot crash a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always the same duration.
    Fixed(Duration),
    /// Uniform between `min` and `max`, inclusive, in whole nanoseconds.
    Uniform {
        /// The shortest draw.
        min: Duration,
        /// The longest draw.
        max: Duration,
    },
    /// Exponential with the given mean (memoryless: the classic service-time model).
    Exponential {
        /// The mean draw.
        mean: Duration,
    },
    /// Normal, truncated at zero: negative draws are redrawn (up to 64 times, then zero), so the
    /// mean is that of the truncated distribution, slightly above `mean` when `stddev` is large.
    Normal {
        /// The mean of the untruncated normal.
        mean: Duration,
        /// The standard deviation of the untruncated normal.
        stddev: Duration,
    },
    /// Lognormal: `ln(draw in seconds)` is normal with mean `mu` and standard deviation `sigma`.
    /// Built from a median and a 99th percentile by [`Dist::lognormal`].
    LogNormal {
        /// The mean of the log of the draw in seconds: `ln(p50)`.
        mu: f64,
        /// The standard deviation of the log of the draw: `(ln p99 - ln p50) / Z99`.
        sigma: f64,
    },
    /// Pareto: never below `scale`, with a tail that is heavier as `shape` gets smaller.
    Pareto {
        /// The minimum draw.
        scale: Duration,
        /// The tail index; the mean is finite only when it is above 1.
        shape: f64,
    },
    /// A weighted choice among other distributions: each draw picks a part with probability
    /// `weight / total weight`, then draws from it.
    Mixture(Vec<(f64, Dist)>),
}

/// Why a distribution is invalid: what was found and what was expected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DistError {
    /// The value is neither a duration string nor a table.
    #[error("expected a distribution: a duration such as \"5ms\" or a table such as {{ dist = \"exponential\", mean = \"5ms\" }}, found {found}")]
    NotADist {
        /// What was found instead.
        found: String,
    },
    /// A dist table without `dist = "..."`.
    #[error("a distribution table needs a `dist` key naming its kind (one of {KINDS})")]
    MissingKind,
    /// A `dist` naming no known kind.
    #[error("unknown distribution {found}; expected one of {KINDS}")]
    UnknownKind {
        /// The kind given.
        found: String,
    },
    /// A required parameter is absent.
    #[error("a {kind} distribution needs `{key}`")]
    MissingKey {
        /// The distribution kind.
        kind: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A key that this kind does not take.
    #[error("unknown key `{key}` in a {kind} distribution; expected {expected}")]
    UnknownKey {
        /// The distribution kind.
        kind: &'static str,
        /// The key found.
        key: String,
        /// The keys this kind takes.
        expected: String,
    },
    /// A plain duration string (a fixed dist) that does not parse.
    #[error("{0}")]
    Duration(UnitError),
    /// A duration parameter that does not parse.
    #[error("`{key}`: {source}")]
    Unit {
        /// The parameter.
        key: &'static str,
        /// Why it does not parse.
        source: UnitError,
    },
    /// A duration parameter over [`MAX_SAMPLE`].
    #[error("`{key}` must be at most 1h, found {found}")]
    TooLong {
        /// The parameter.
        key: &'static str,
        /// Its value.
        found: String,
    },
    /// A parameter that must be above zero is zero.
    #[error("`{key}` of a {kind} distribution must be above zero")]
    Zero {
        /// The distribution kind.
        kind: &'static str,
        /// The parameter.
        key: &'static str,
    },
    /// A uniform distribution whose `max` is below its `min`.
    #[error("uniform distribution has max {max} below min {min}; expected max >= min")]
    MaxBelowMin {
        /// The minimum given.
        min: String,
        /// The maximum given.
        max: String,
    },
    /// A lognormal distribution whose p99 is below its p50.
    #[error("lognormal distribution has p99 {p99} below p50 {p50}; expected p99 >= p50")]
    P99BelowP50 {
        /// The median given.
        p50: String,
        /// The 99th percentile given.
        p99: String,
    },
    /// A Pareto shape that is not a positive number.
    #[error("`shape` of a pareto distribution must be a number above 0, found {found}")]
    BadShape {
        /// What was found.
        found: String,
    },
    /// A mixture part whose weight is not a positive number up to [`MAX_WEIGHT`].
    #[error("`weight` of a mixture part must be a number above 0 and at most 1e9, found {found}")]
    BadWeight {
        /// What was found.
        found: String,
    },
    /// A mixture's `parts` is not an array of tables.
    #[error("`parts` of a mixture must be an array of tables such as {{ weight = 1, dist = \"fixed\", value = \"1s\" }}, found {found}")]
    BadParts {
        /// What was found.
        found: String,
    },
    /// A mixture with no parts.
    #[error("a mixture needs at least one part")]
    EmptyMixture,
    /// A mixture with too many parts.
    #[error("a mixture may have at most {MAX_PARTS} parts, found {found}")]
    TooManyParts {
        /// How many were given.
        found: usize,
    },
    /// Mixtures nested past [`MAX_DEPTH`].
    #[error("distributions nest at most {MAX_DEPTH} deep (mixtures within mixtures)")]
    TooDeep,
}

impl Dist {
    /// A distribution that always draws zero.
    pub const ZERO: Dist = Dist::Fixed(Duration::ZERO);

    /// A fixed duration, at most [`MAX_SAMPLE`].
    pub fn fixed(value: Duration) -> Result<Dist, DistError> {
        Ok(Dist::Fixed(at_most_max("value", value)?))
    }

    /// Uniform over `[min, max]`.
    pub fn uniform(min: Duration, max: Duration) -> Result<Dist, DistError> {
        let (min, max) = (at_most_max("min", min)?, at_most_max("max", max)?);
        if max < min {
            let (min, max) = (format_duration(min), format_duration(max));
            return Err(DistError::MaxBelowMin { min, max });
        }
        Ok(Dist::Uniform { min, max })
    }

    /// Exponential with a mean above zero.
    pub fn exponential(mean: Duration) -> Result<Dist, DistError> {
        let mean = positive("exponential", "mean", at_most_max("mean", mean)?)?;
        Ok(Dist::Exponential { mean })
    }

    /// Normal with the given mean and standard deviation, truncated at zero.
    pub fn normal(mean: Duration, stddev: Duration) -> Result<Dist, DistError> {
        let (mean, stddev) = (at_most_max("mean", mean)?, at_most_max("stddev", stddev)?);
        Ok(Dist::Normal { mean, stddev })
    }

    /// Lognormal with median `p50` and 99th percentile `p99`:
    /// `mu = ln(p50)`, `sigma = (ln(p99) - ln(p50)) / Z99` (durations in seconds).
    pub fn lognormal(p50: Duration, p99: Duration) -> Result<Dist, DistError> {
        let p50 = positive("lognormal", "p50", at_most_max("p50", p50)?)?;
        let p99 = at_most_max("p99", p99)?;
        if p99 < p50 {
            let (p50, p99) = (format_duration(p50), format_duration(p99));
            return Err(DistError::P99BelowP50 { p50, p99 });
        }
        let mu = p50.as_secs_f64().ln();
        let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
        Ok(Dist::LogNormal { mu, sigma })
    }

    /// Pareto with minimum `scale` (above zero) and tail index `shape` (above zero).
    pub fn pareto(scale: Duration, shape: f64) -> Result<Dist, DistError> {
        let scale = positive("pareto", "scale", at_most_max("scale", scale)?)?;
        if !(shape.is_finite() && shape > 0.0) {
            return Err(DistError::BadShape {
                found: shape.to_string(),
            });
        }
        Ok(Dist::Pareto { scale, shape })
    }

    /// A weighted mixture: weights above zero and at most [`MAX_WEIGHT`], 1 to [`MAX_PARTS`] parts.
    pub fn mixture(parts: Vec<(f64, Dist)>) -> Result<Dist, DistError> {
        if parts.is_empty() {
            return Err(DistError::EmptyMixture);
        }
        if parts.len() > MAX_PARTS {
            return Err(DistError::TooManyParts { found: parts.len() });
        }
        if let Some((weight, _)) = parts.iter().find(|(weight, _)| !valid_weight(*weight)) {
            return Err(DistError::BadWeight {
                found: weight.to_string(),
            });
        }
        Ok(Dist::Mixture(parts))
    }

    /// Reads a distribution from TOML: a duration string ("5ms", a fixed value) or a table whose
    /// `dist` key names the kind, e.g. `{ dist = "lognormal", p50 = "1ms", p99 = "4ms" }`.
    pub fn from_toml(value: &toml::Value) -> Result<Dist, DistError> {
        from_toml_at(value, 1)
    }

    /// Draws one duration, in `0..=MAX_SAMPLE`, with nanosecond precision.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match self {
            Dist::Fixed(value) => (*value).min(MAX_SAMPLE),
            Dist::Uniform { min, max } => sample_uniform(*min, *max, rng),
            Dist::Exponential { mean } => {
                let draw = Exp::new(1.0 / mean.as_secs_f64()).map(|exp| exp.sample(rng));
                secs_to_sample(draw.unwrap_or(0.0))
            }
            Dist::Normal { mean, stddev } => sample_normal(*mean, *stddev, rng),
            Dist::LogNormal { mu, sigma } => {
                let draw = LogNormal::new(*mu, *sigma).map(|dist| dist.sample(rng));
                secs_to_sample(draw.unwrap_or(0.0))
            }
            Dist::Pareto { scale, shape } => {
                let draw = Pareto::new(scale.as_secs_f64(), *shape).map(|dist| dist.sample(rng));
                secs_to_sample(draw.unwrap_or(scale.as_secs_f64()))
            }
            Dist::Mixture(parts) => sample_mixture(parts, rng),
        }
    }

    /// The analytic mean, or `None` when it is not finite (Pareto with shape <= 1) or is over
    /// [`MAX_SAMPLE`] (where clamping makes the draws' mean differ from the formula).
    pub fn mean(&self) -> Option<Duration> {
        let seconds = match self {
            Dist::Fixed(value) => return Some((*value).min(MAX_SAMPLE)),
            Dist::Uniform { min, max } => return Some(uniform_mean(*min, *max)),
            Dist::Exponential { mean } => mean.as_secs_f64(),
            Dist::Normal { mean, stddev } => {
                truncated_normal_mean(mean.as_secs_f64(), stddev.as_secs_f64())
            }
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Dist::Pareto { scale, shape } if *shape > 1.0 => {
                scale.as_secs_f64() * shape / (shape - 1.0)
            }
            Dist::Pareto { .. } => return None,
            Dist::Mixture(parts) => mixture_mean_secs(parts)?,
        };
        (seconds.is_finite() && seconds >= 0.0 && seconds <= MAX_SAMPLE.as_secs_f64())
            .then(|| secs_to_sample(seconds))
    }
}

impl Default for Dist {
    fn default() -> Dist {
        Dist::ZERO
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Duration| format_duration(*d);
        match self {
            Dist::Fixed(value) => write!(f, "{}", show(value)),
            Dist::Uniform { min, max } => write!(f, "uniform({}..{})", show(min), show(max)),
            Dist::Exponential { mean } => write!(f, "exponential(mean {})", show(mean)),
            Dist::Normal { mean, stddev } => {
                write!(f, "normal(mean {}, stddev {})", show(mean), show(stddev))
            }
            Dist::LogNormal { mu, sigma } => {
                let p50 = secs_to_sample(mu.exp());
                let p99 = secs_to_sample((mu + Z99 * sigma).exp());
                write!(f, "lognormal(p50 {}, p99 {})", show(&p50), show(&p99))
            }
            Dist::Pareto { scale, shape } => {
                write!(f, "pareto(scale {}, shape {shape})", show(scale))
            }
            Dist::Mixture(parts) => {
                let shown: Vec<String> = parts.iter().map(|(w, d)| format!("{w}: {d}")).collect();
                write!(f, "mixture({})", shown.join(", "))
            }
        }
    }
}

/// Reads a dist at nesting `depth` (1 for a top-level one).
fn from_toml_at(value: &toml::Value, depth: usize) -> Result<Dist, DistError> {
    match value {
        toml::Value::String(text) => {
            let value = units::parse_duration(text).map_err(DistError::Duration)?;
            Dist::fixed(value)
        }
        toml::Value::Table(table) => from_table(table, depth, &[]),
        other => Err(DistError::NotADist {
            found: describe_value(other),
        }),
    }
}

/// Reads a dist table; `extra` names keys the caller handles (a mixture part's `weight`).
fn from_table(table: &toml::Table, depth: usize, extra: &[&str]) -> Result<Dist, DistError> {
    if depth > MAX_DEPTH {
        return Err(DistError::TooDeep);
    }
    let kind = match table.get("dist") {
        None => return Err(DistError::MissingKind),
        Some(toml::Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(DistError::UnknownKind {
                found: describe_value(other),
            })
        }
    };
    let (kind, keys): (&'static str, &'static [&'static str]) = match kind {
        "fixed" => ("fixed", &["value"]),
        "uniform" => ("uniform", &["min", "max"]),
        "exponential" => ("exponential", &["mean"]),
        "normal" => ("normal", &["mean", "stddev"]),
        "lognormal" => ("lognormal", &["p50", "p99"]),
        "pareto" => ("pareto", &["scale", "shape"]),
        "mixture" => ("mixture", &["parts"]),
        other => {
            return Err(DistError::UnknownKind {
                found: units::quote(other),
            })
        }
    };
    let fields = Fields { kind, table };
    fields.deny_unknown(keys, extra)?;
    match kind {
        "fixed" => Dist::fixed(fields.duration("value")?),
        "uniform" => Dist::uniform(fields.duration("min")?, fields.duration("max")?),
        "exponential" => Dist::exponential(fields.duration("mean")?),
        "normal" => Dist::normal(fields.duration("mean")?, fields.duration("stddev")?),
        "lognormal" => Dist::lognormal(fields.duration("p50")?, fields.duration("p99")?),
        "pareto" => Dist::pareto(fields.duration("scale")?, fields.shape()?),
        _ => Dist::mixture(fields.parts(depth)?),
    }
}

/// The keys of one dist table, read with messages that name the kind.
struct Fields<'a> {
    kind: &'static str,
    table: &'a toml::Table,
}

impl Fields<'_> {
    /// Rejects any key other than `dist`, the kind's `keys` and the caller's `extra` keys.
    fn deny_unknown(&self, keys: &[&str], extra: &[&str]) -> Result<(), DistError> {
        let known = |key: &str| key == "dist" || keys.contains(&key) || extra.contains(&key);
        match self.table.keys().find(|key| !known(key)) {
            None => Ok(()),
            Some(key) => Err(DistError::UnknownKey {
                kind: self.kind,
                key: key.clone(),
                expected: keys.join(", "),
            }),
        }
    }

    /// The value of a required key.
    fn get(&self, key: &'static str) -> Result<&toml::Value, DistError> {
        self.table.get(key).ok_or(DistError::MissingKey {
            kind: self.kind,
            key,
        })
    }

    /// A required duration parameter.
    fn duration(&self, key: &'static str) -> Result<Duration, DistError> {
        units::duration_from_toml(self.get(key)?).map_err(|source| DistError::Unit { key, source })
    }

    /// A Pareto shape: a number (integer or float) above zero.
    fn shape(&self) -> Result<f64, DistError> {
        let value = self.get("shape")?;
        number(value).ok_or_else(|| DistError::BadShape {
            found: describe_value(value),
        })
    }

    /// A mixture's parts, each a table with a `weight` and the keys of its own dist.
    fn parts(&self, depth: usize) -> Result<Vec<(f64, Dist)>, DistError> {
        let value = self.get("parts")?;
        let bad = || DistError::BadParts {
            found: describe_value(value),
        };
        let parts = value.as_array().ok_or_else(bad)?;
        if parts.len() > MAX_PARTS {
            return Err(DistError::TooManyParts { found: parts.len() });
        }
        let part = |value: &toml::Value| -> Result<(f64, Dist), DistError> {
            let table = value.as_table().ok_or_else(bad)?;
            let weight = table.get("weight").ok_or(DistError::MissingKey {
                kind: "mixture part of a",
                key: "weight",
            })?;
            let weight = number(weight).filter(|w| valid_weight(*w)).ok_or_else(|| {
                DistError::BadWeight {
                    found: describe_value(weight),
                }
            })?;
            Ok((weight, from_table(table, depth + 1, &["weight"])?))
        };
        parts.iter().map(part).collect()
    }
}

/// A TOML number as `f64`, if it is a finite number above zero.
fn number(value: &toml::Value) -> Option<f64> {
    let number = match value {
        toml::Value::Integer(integer) => *integer as f64,
        toml::Value::Float(float) => *float,
        _ => return None,
    };
    (number.is_finite() && number > 0.0).then_some(number)
}

/// Whether a mixture weight is usable: above zero and at most [`MAX_WEIGHT`], so the total of up
/// to [`MAX_PARTS`] weights stays finite.
fn valid_weight(weight: f64) -> bool {
    weight > 0.0 && weight <= MAX_WEIGHT
}

/// Checks a parameter against [`MAX_SAMPLE`].
fn at_most_max(key: &'static str, value: Duration) -> Result<Duration, DistError> {
    if value > MAX_SAMPLE {
        return Err(DistError::TooLong {
            key,
            found: format_duration(value),
        });
    }
    Ok(value)
}

/// Checks that a parameter is above zero.
fn positive(kind: &'static str, key: &'static str, value: Duration) -> Result<Duration, DistError> {
    if value.is_zero() {
        return Err(DistError::Zero { kind, key });
    }
    Ok(value)
}

/// Converts a draw in seconds to a duration in `0..=MAX_SAMPLE`; NaN and negatives become zero.
fn secs_to_sample(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    let max_seconds = MAX_SAMPLE.as_secs_f64();
    if seconds >= max_seconds {
        return MAX_SAMPLE;
    }
    // In range, so the product is far below u64::MAX; `as` saturates in any case.
    Duration::from_nanos((seconds * 1e9).round() as u64)
}

/// A uniform draw in whole nanoseconds; an inverted range draws `min`.
fn sample_uniform<R: Rng + ?Sized>(min: Duration, max: Duration, rng: &mut R) -> Duration {
    let (min, max) = (min.min(MAX_SAMPLE), max.min(MAX_SAMPLE));
    if max <= min {
        return min;
    }
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(nanos(min)..=nanos(max)))
}

/// A normal draw truncated at zero by redrawing negatives.
fn sample_normal<R: Rng + ?Sized>(mean: Duration, stddev: Duration, rng: &mut R) -> Duration {
    let Ok(normal) = Normal::new(mean.as_secs_f64(), stddev.as_secs_f64()) else {
        return mean.min(MAX_SAMPLE);
    };
    (0..NORMAL_REDRAWS)
        .map(|_| normal.sample(rng))
        .find(|draw| *draw >= 0.0)
        .map_or(Duration::ZERO, secs_to_sample)
}

/// Picks a part with probability proportional to its weight and draws from it.
fn sample_mixture<R: Rng + ?Sized>(parts: &[(f64, Dist)], rng: &mut R) -> Duration {
    let usable = || parts.iter().filter(|(weight, _)| valid_weight(*weight));
    let total: f64 = usable().map(|(weight, _)| weight).sum();
    if !(total.is_finite() && total > 0.0) {
        return Duration::ZERO;
    }
    let mut point = rng.random::<f64>() * total;
    for (weight, dist) in usable() {
        if point < *weight {
            return dist.sample(rng);
        }
        point -= weight;
    }
    // Rounding can leave `point` just past the last weight: that draw belongs to the last part.
    usable()
        .next_back()
        .map_or(Duration::ZERO, |(_, dist)| dist.sample(rng))
}

/// The exact midpoint of `[min, max]`.
fn uniform_mean(min: Duration, max: Duration) -> Duration {
    let (min, max) = (min.min(MAX_SAMPLE), max.min(MAX_SAMPLE));
    let midpoint = (min.as_nanos() + max.as_nanos()) / 2;
    Duration::from_nanos(u64::try_from(midpoint).unwrap_or(u64::MAX))
}

/// The weighted mean of the parts' means, in seconds; `None` if any part has no mean.
fn mixture_mean_secs(parts: &[(f64, Dist)]) -> Option<f64> {
    let mut total_weight = 0.0;
    let mut weighted_sum = 0.0;
    for (weight, dist) in parts.iter().filter(|(weight, _)| valid_weight(*weight)) {
        total_weight += weight;
        weighted_sum += weight * dist.mean()?.as_secs_f64();
    }
    (total_weight > 0.0).then(|| weighted_sum / total_weight)
}

/// The mean of a normal(`mean`, `stddev`) truncated to `[0, inf)`: `mean + stddev * pdf(a) / (1 - cdf(a))`
/// with `a = -mean / stddev`.
fn truncated_normal_mean(mean: f64, stddev: f64) -> f64 {
    if stddev <= 0.0 {
        return mean.max(0.0);
    }
    let alpha = -mean / stddev;
    let pdf = (-alpha * alpha / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let tail = 1.0 - standard_normal_cdf(alpha);
    mean + stddev * pdf / tail
}

/// The standard normal CDF, through a Chebyshev fit of erfc with relative error under 1.2e-7
/// (Numerical Recipes' `erfcc`).
fn standard_normal_cdf(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let coefficients = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let poly = coefficients.iter().rev().fold(0.0, |acc, c| c + t * acc);
    let erfc_z = t * (-z * z + poly).exp();
    let erfc = if x <= 0.0 { erfc_z } else { 2.0 - erfc_z };
    // cdf(x) = erfc(-x / sqrt 2) / 2.
    erfc / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const DRAWS: usize = 100_000;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn parse(text: &str) -> Result<Dist, DistError> {
        let table: toml::Table =
            toml::from_str(&format!("d = {text}")).expect("test input is TOML");
        Dist::from_toml(&table["d"])
    }

    fn draws(dist: &Dist, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..DRAWS)
            .map(|_| dist.sample(&mut rng).as_secs_f64())
            .collect()
    }

    fn sample_mean(dist: &Dist) -> f64 {
        draws(dist, 7).iter().sum::<f64>() / DRAWS as f64
    }

    fn assert_close(observed: f64, expected: f64, tolerance: f64, what: &str) {
        let error = (observed - expected).abs() / expected;
        assert!(
            error < tolerance,
            "{what}: observed {observed}, expected {expected}"
        );
    }

    #[test]
    fn sample_means_match_analytic_means() {
        let dists = [
            Dist::fixed(ms(5)),
            Dist::uniform(ms(1), ms(3)),
            Dist::exponential(ms(5)),
            Dist::normal(ms(5), ms(1)),
            Dist::normal(ms(1), ms(2)),
            Dist::lognormal(ms(1), ms(4)),
            Dist::pareto(ms(1), 3.0),
            Dist::mixture(vec![
                (99.0, Dist::Exponential { mean: ms(5) }),
                (1.0, Dist::Fixed(ms(1000))),
            ]),
        ];
        for dist in dists {
            let dist = dist.expect("valid parameters");
            let analytic = dist.mean().expect("finite mean").as_secs_f64();
            assert_close(sample_mean(&dist), analytic, 0.03, &dist.to_string());
        }
    }

    #[test]
    fn lognormal_median_and_p99_match_the_spec() {
        let dist = Dist::lognormal(ms(1), ms(4)).expect("valid lognormal");
        let mut sorted = draws(&dist, 11);
        sorted.sort_by(f64::total_cmp);
        assert_close(sorted[DRAWS / 2], 0.001, 0.03, "p50");
        assert_close(sorted[DRAWS * 99 / 100], 0.004, 0.05, "p99");
    }

    #[test]
    fn mixture_picks_parts_in_proportion_to_weight() {
        let dist = parse(
            r#"{ dist = "mixture", parts = [ { weight = 99, dist = "fixed", value = "5ms" }, { weight = 1, dist = "fixed", value = "1s" } ] }"#,
        )
        .expect("valid mixture");
        let slow = draws(&dist, 3).iter().filter(|d| **d >= 1.0).count();
        assert_close(slow as f64 / DRAWS as f64, 0.01, 0.1, "slow share");
    }

    #[test]
    fn truncated_normal_never_draws_below_zero() {
        let dist = Dist::normal(ms(1), ms(10)).expect("valid normal");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let zeros = (0..1000)
            .filter(|_| dist.sample(&mut rng).is_zero())
            .count();
        assert!(zeros < 5, "redraws, not clamps: {zeros} zeros");
    }

    #[test]
    fn heavy_tails_are_clamped_to_the_sample_cap() {
        let dist = Dist::Pareto {
            scale: MAX_SAMPLE,
            shape: 0.01,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..1000).all(|_| dist.sample(&mut rng) <= MAX_SAMPLE));
        assert_eq!(Dist::pareto(ms(1), 1.0).ok().and_then(|d| d.mean()), None);
    }

    #[test]
    fn hand_built_invalid_dists_sample_without_panicking() {
        let odd = [
            Dist::Uniform {
                min: ms(5),
                max: ms(1),
            },
            Dist::Exponential {
                mean: Duration::ZERO,
            },
            Dist::LogNormal {
                mu: f64::NAN,
                sigma: -1.0,
            },
            Dist::Pareto {
                scale: Duration::ZERO,
                shape: -1.0,
            },
            Dist::Mixture(vec![]),
            Dist::Mixture(vec![(f64::NAN, Dist::ZERO), (-1.0, Dist::ZERO)]),
            Dist::Fixed(Duration::MAX),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for dist in odd {
            assert!(dist.sample(&mut rng) <= MAX_SAMPLE);
            let _ = dist.mean();
        }
    }

    #[test]
    fn toml_forms_parse_to_the_matching_variant() {
        assert_eq!(parse(r#""5ms""#), Ok(Dist::Fixed(ms(5))));
        assert_eq!(
            parse(r#"{ dist = "fixed", value = "5ms" }"#),
            Ok(Dist::Fixed(ms(5)))
        );
        assert_eq!(
            parse(r#"{ dist = "uniform", min = "1ms", max = "3ms" }"#),
            Ok(Dist::Uniform {
                min: ms(1),
                max: ms(3)
            })
        );
        assert_eq!(
            parse(r#"{ dist = "exponential", mean = "5ms" }"#),
            Ok(Dist::Exponential { mean: ms(5) })
        );
        assert_eq!(
            parse(r#"{ dist = "pareto", scale = "1ms", shape = 1.5 }"#),
            Ok(Dist::Pareto {
                scale: ms(1),
                shape: 1.5
            })
        );
        let Ok(Dist::LogNormal { mu, sigma }) =
            parse(r#"{ dist = "lognormal", p50 = "1ms", p99 = "4ms" }"#)
        else {
            panic!("lognormal expected");
        };
        assert!((mu - 0.001f64.ln()).abs() < 1e-12);
        assert!((sigma - 4f64.ln() / Z99).abs() < 1e-12);
    }

    #[test]
    fn invalid_parameters_are_reported() {
        type Expect = fn(&DistError) -> bool;
        let cases: [(&str, Expect); 12] = [
            (r#"{ dist = "lognormal", p50 = "4ms", p99 = "1ms" }"#, |e| {
                matches!(e, DistError::P99BelowP50 { .. })
            }),
            (r#"{ dist = "uniform", min = "3ms", max = "1ms" }"#, |e| {
                matches!(e, DistError::MaxBelowMin { .. })
            }),
            (r#"{ dist = "pareto", scale = "1ms", shape = 0 }"#, |e| {
                matches!(e, DistError::BadShape { .. })
            }),
            (r#"{ dist = "pareto", scale = "1ms", shape = -2.0 }"#, |e| {
                matches!(e, DistError::BadShape { .. })
            }),
            (r#"{ dist = "mixture", parts = [] }"#, |e| {
                matches!(e, DistError::EmptyMixture)
            }),
            (
                r#"{ dist = "mixture", parts = [ { weight = 0, dist = "fixed", value = "1s" } ] }"#,
                |e| matches!(e, DistError::BadWeight { .. }),
            ),
            (
                r#"{ dist = "mixture", parts = [ { weight = -1, dist = "fixed", value = "1s" } ] }"#,
                |e| matches!(e, DistError::BadWeight { .. }),
            ),
            (r#"{ dist = "gamma", k = 2 }"#, |e| {
                matches!(e, DistError::UnknownKind { .. })
            }),
            (
                r#"{ dist = "exponential", mean = "5ms", p99 = "1s" }"#,
                |e| matches!(e, DistError::UnknownKey { .. }),
            ),
            (r#"{ dist = "exponential" }"#, |e| {
                matches!(e, DistError::MissingKey { .. })
            }),
            (r#"{ dist = "exponential", mean = "5 parsecs" }"#, |e| {
                matches!(e, DistError::Unit { .. })
            }),
            (r#"{ dist = "fixed", value = "2h" }"#, |e| {
                matches!(e, DistError::TooLong { .. })
            }),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(expected(&error), "{text}: {error}");
        }
        assert!(matches!(parse("5"), Err(DistError::NotADist { .. })));
    }

    #[test]
    fn mixtures_nest_at_most_four_deep() {
        let nest = |depth: usize| {
            (1..depth).fold(
                r#"{ dist = "fixed", value = "1ms" }"#.to_string(),
                |inner, _| {
                    let part = inner.replacen('{', "{ weight = 1,", 1);
                    format!(r#"{{ dist = "mixture", parts = [ {part} ] }}"#)
                },
            )
        };
        assert!(parse(&nest(MAX_DEPTH)).is_ok());
        assert_eq!(parse(&nest(MAX_DEPTH + 1)), Err(DistError::TooDeep));
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((standard_normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((standard_normal_cdf(Z99) - 0.99).abs() < 1e-6);
        assert!((standard_normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }
}
