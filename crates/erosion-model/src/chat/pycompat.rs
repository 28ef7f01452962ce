//! The small places where Python's jinja2 and minijinja print or strip differently, made to behave
//! like Python: whitespace as `str.isspace` defines it (it includes U+001C..U+001F, which Rust's
//! `char::is_whitespace` does not), `True`/`False`/`None` and float `repr` when a value is printed,
//! and `strftime_now` (a global transformers registers for Llama 3.x templates).

use std::cell::Cell;
use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Output, State, Value};

/// Python's `str.isspace()` for one character.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip(chars)` / `lstrip` / `rstrip`: `chars = None` strips Python whitespace.
pub(crate) fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(matches);
    }
    if right {
        out = out.trim_end_matches(matches);
    }
    out
}

/// jinja2's `trim` filter: `value.strip(chars)`.
pub(crate) fn trim_filter(value: &str, chars: Option<&str>) -> String {
    py_strip(value, chars, true, true).to_string()
}

/// minijinja-contrib's Python methods, with `strip`/`lstrip`/`rstrip` replaced by ones that use
/// Python's definition of whitespace.
pub(crate) fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let (Some(s), "strip" | "lstrip" | "rstrip") = (value.as_str(), method) {
        let chars = match args {
            [] => None,
            [c] if c.is_none() => None,
            [c] => Some(c.as_str().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{method} arg must be None or str"),
                )
            })?),
            _ => return Err(Error::from(ErrorKind::TooManyArguments)),
        };
        let (left, right) = match method {
            "strip" => (true, true),
            "lstrip" => (true, false),
            _ => (false, true),
        };
        return Ok(Value::from(py_strip(s, chars, left, right)));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Prints values as Python's `str()` would where minijinja differs: `None`, `True`, `False`, and
/// floats (`1e+16`, not `10000000000000000.0`). Everything else uses minijinja's formatter.
pub(crate) fn python_formatter(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::None => Some("None".to_string()),
        ValueKind::Bool => Some(if value.is_true() { "True" } else { "False" }.to_string()),
        ValueKind::Number if !value.is_integer() => f64::try_from(value.clone())
            .ok()
            .map(super::pyjson::py_float_repr),
        _ => None,
    };
    match text {
        Some(t) => out
            .write_str(&t)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "could not write template output")),
        None => minijinja::escape_formatter(out, state, value),
    }
}

thread_local! {
    /// The clock `strftime_now` reads during one render (seconds since the Unix epoch, UTC).
    /// Set by `ChatTemplate::render` so that several renders of one conversation agree.
    pub(crate) static RENDER_NOW: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Seconds since the Unix epoch, now.
pub(crate) fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `strftime_now(format)`: the render's clock formatted like Python's `datetime.strftime`.
pub(crate) fn strftime_now(format: &str) -> Result<String, Error> {
    let now = RENDER_NOW.with(|c| c.get()).unwrap_or_else(system_now);
    strftime(now, format)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Formats a UTC instant with the C-locale `strftime` directives Python passes through on Linux.
/// Supported: `%a %A %b %B %d %e %H %I %j %m %M %p %S %y %Y %F %T %D %R %n %t %%`, and glibc's `%-d`
/// style (no padding) for `d e H I j m M S`. Others are an error naming the directive.
pub(crate) fn strftime(unix: i64, format: &str) -> Result<String, Error> {
    let t = Civil::from_unix(unix);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: format ends with a lone '%'",
            )
        })?;
        let unpadded = spec == '-';
        if unpadded {
            spec = chars.next().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "strftime_now: format ends with '%-'",
                )
            })?;
        }
        t.directive(&mut out, spec, unpadded)?;
    }
    Ok(out)
}

/// A UTC instant's calendar fields, as `strftime` reads them.
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 = Monday .. 6 = Sunday (an index into `WEEKDAYS`).
    weekday: usize,
    /// Day of the year, 1..=366.
    yday: i64,
}

impl Civil {
    /// The fields of `unix` seconds since 1970-01-01 00:00 UTC.
    fn from_unix(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday (index 3)
        let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday =
            cumulative[month as usize - 1] + day as i64 + i64::from(month > 2 && is_leap(year));
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: (secs / 60) % 60,
            second: secs % 60,
            weekday,
            yday,
        }
    }

    /// Appends directive `%spec` (`%-spec` when `unpadded`) to `out`.
    fn directive(&self, out: &mut String, spec: char, unpadded: bool) -> Result<(), Error> {
        let Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            weekday,
            yday,
        } = *self;
        let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let num = |out: &mut String, v: i64, width: usize| {
            if unpadded {
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{v:0width$}");
            }
        };
        match spec {
            'a' => out.push_str(&WEEKDAYS[weekday][..3]),
            'A' => out.push_str(WEEKDAYS[weekday]),
            'b' | 'h' => out.push_str(&MONTHS[month as usize - 1][..3]),
            'B' => out.push_str(MONTHS[month as usize - 1]),
            'd' => num(out, day as i64, 2),
            'e' if unpadded => num(out, day as i64, 2),
            'e' => {
                let _ = write!(out, "{day:>2}");
            }
            'H' => num(out, hour, 2),
            'I' => num(out, hour12, 2),
            'j' => num(out, yday, 3),
            'm' => num(out, month as i64, 2),
            'M' => num(out, minute, 2),
            'S' => num(out, second, 2),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'y' => {
                let _ = write!(out, "{:02}", year.rem_euclid(100));
            }
            'Y' => {
                let _ = write!(out, "{year}");
            }
            'F' => {
                let _ = write!(out, "{year}-{month:02}-{day:02}");
            }
            'T' => {
                let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
            }
            'R' => {
                let _ = write!(out, "{hour:02}:{minute:02}");
            }
            'D' => {
                let _ = write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100));
            }
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_matches_python() {
        // 2024-07-26 13:05:09 UTC (a Friday) = 1721999109; expected strings from CPython's
        // datetime(2024, 7, 26, 13, 5, 9).strftime(...).
        let t = 1_721_999_109;
        assert_eq!(strftime(t, "%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime(t, "%A %B %-d, %y %I:%M:%S %p %j").unwrap(),
            "Friday July 26, 24 01:05:09 PM 208"
        );
        assert_eq!(strftime(t, "%F %T %%").unwrap(), "2024-07-26 13:05:09 %");
        // Leap day and the epoch itself.
        assert_eq!(
            strftime(951_782_400, "%Y-%m-%d %a %j").unwrap(),
            "2000-02-29 Tue 060"
        );
        assert_eq!(strftime(0, "%d %b %Y %H").unwrap(), "01 Jan 1970 00");
        assert!(strftime(t, "%Q").is_err());
    }

    #[test]
    fn python_whitespace() {
        assert_eq!(trim_filter("\u{1c} a b\t\n", None), "a b");
        assert_eq!(py_strip("xxaxx", Some("x"), true, false), "axx");
        assert_eq!(py_strip("  a  ", None, false, true), "  a");
    }
}
