//! HTTP dates as nginx reads and writes them.
//!
//! [`parse`] is nginx's `ngx_parse_http_time`: the three formats of
//! RFC 9110 (`Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37
//! GMT`, `Sun Nov  6 08:49:37 1994`), the weekday and zone unchecked, any
//! year from 0 to 9999; conditional requests compare what it returns, so
//! it must accept and refuse what nginx does. [`format()`] writes the
//! RFC 9110 form.

/// Days in each month of a common year.
const MDAY: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Reads an HTTP date as seconds since the epoch; `None` where nginx's
/// parser fails.
pub fn parse(value: &[u8]) -> Option<i64> {
    // nginx reads past the value into its terminating NUL; past the end
    // reads as 0 here, which fails every check as NUL does there.
    let at = |i: usize| value.get(i).copied().unwrap_or(0);
    let digit = |i: usize| at(i).is_ascii_digit();
    let num = |i: usize| u32::from(at(i) - b'0');
    #[derive(PartialEq)]
    enum Fmt {
        Rfc822,
        Rfc850,
        Isoc,
    }
    let end = value.len();
    let mut p = 0;
    let mut fmt = None;
    while p < end {
        match value[p] {
            b',' => break,
            b' ' => {
                fmt = Some(Fmt::Isoc);
                break;
            }
            _ => p += 1,
        }
    }
    p += 1;
    while p < end && value[p] == b' ' {
        p += 1;
    }
    if end.saturating_sub(p) < 18 {
        return None;
    }
    let mut day = 0;
    if fmt.is_none() {
        if !(digit(p) && digit(p + 1)) {
            return None;
        }
        day = num(p) * 10 + num(p + 1);
        p += 2;
        fmt = match at(p) {
            b' ' if end - p >= 18 => Some(Fmt::Rfc822),
            b'-' => Some(Fmt::Rfc850),
            _ => return None,
        };
        p += 1;
    }
    let fmt = fmt.expect("decided above");
    let month = match at(p) {
        b'J' if at(p + 1) == b'a' => 0,
        b'J' if at(p + 2) == b'n' => 5,
        b'J' => 6,
        b'F' => 1,
        b'M' if at(p + 2) == b'r' => 2,
        b'M' => 4,
        b'A' if at(p + 1) == b'p' => 3,
        b'A' => 7,
        b'S' => 8,
        b'O' => 9,
        b'N' => 10,
        b'D' => 11,
        _ => return None,
    };
    p += 3;
    if (fmt == Fmt::Rfc822 && at(p) != b' ') || (fmt == Fmt::Rfc850 && at(p) != b'-') {
        return None;
    }
    p += 1;
    let four = |p: usize| {
        (digit(p) && digit(p + 1) && digit(p + 2) && digit(p + 3))
            .then(|| num(p) * 1000 + num(p + 1) * 100 + num(p + 2) * 10 + num(p + 3))
    };
    let mut year = 0;
    match fmt {
        Fmt::Rfc822 => {
            year = four(p)?;
            p += 4;
        }
        Fmt::Rfc850 => {
            if !(digit(p) && digit(p + 1)) {
                return None;
            }
            year = num(p) * 10 + num(p + 1);
            year += if year < 70 { 2000 } else { 1900 };
            p += 2;
        }
        Fmt::Isoc => {
            if at(p) == b' ' {
                p += 1;
            }
            if !digit(p) {
                return None;
            }
            day = num(p);
            p += 1;
            if at(p) != b' ' {
                if !digit(p) {
                    return None;
                }
                day = day * 10 + num(p);
                p += 1;
            }
            if end.saturating_sub(p) < 14 {
                return None;
            }
        }
    }
    if at(p) != b' ' {
        return None;
    }
    p += 1;
    let two = |p: usize| (digit(p) && digit(p + 1)).then(|| num(p) * 10 + num(p + 1));
    let hour = two(p)?;
    if at(p + 2) != b':' {
        return None;
    }
    let min = two(p + 3)?;
    if at(p + 5) != b':' {
        return None;
    }
    let sec = two(p + 6)?;
    p += 8;
    if fmt == Fmt::Isoc {
        if at(p) != b' ' {
            return None;
        }
        year = four(p + 1)?;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if day == 29 && month == 1 {
        if !leap {
            return None;
        }
    } else if day > MDAY[month] {
        return None;
    }
    Some(
        seconds(i64::from(year), month as i64, i64::from(day))
            + i64::from(hour * 3600 + min * 60 + sec),
    )
}

/// Seconds from the epoch to the start of `day` of `month` (0-11) of
/// `year`, by Gauss' formula as nginx computes it (day 0 is the last day of
/// the month before).
fn seconds(mut year: i64, month: i64, day: i64) -> i64 {
    // Years start on March 1 and months count from 1.
    let mut month = month;
    if month < 2 {
        month += 12;
        year -= 1;
    }
    month -= 1;
    let days =
        365 * year + year / 4 - year / 100 + year / 400 + 367 * month / 12 - 30 + day - 1 - 719_527
            + 31
            + 28;
    days * 86_400
}

/// Writes `secs` since the epoch as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format(secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Seconds since the epoch now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn httptime_reads_the_three_formats() {
        let t = 784_111_777;
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse(b"Sun Nov 6 08:49:37 1994"), Some(t));
        // The weekday is not checked, nor what follows the seconds.
        assert_eq!(parse(b"Xyz, 06 Nov 1994 08:49:37 UTC"), Some(t));
        assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn httptime_years_and_limits() {
        assert_eq!(parse(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse(b"Tue, 19 Jan 2038 03:14:07 GMT"), Some(0x7fff_ffff));
        assert_eq!(parse(b"Tue, 19 Jan 2038 03:14:08 GMT"), Some(0x8000_0000));
        assert_eq!(parse(b"Fri, 25 Feb 2174 09:42:23 GMT"), Some(0x1_7fff_ffff));
        assert_eq!(parse(b"Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1));
        assert_eq!(parse(b"Sun, 29 Feb 2004 00:00:00 GMT"), Some(1_078_012_800));
        assert_eq!(parse(b"Thu, 29 Feb 2001 00:00:00 GMT"), None);
        assert_eq!(parse(b"Thu, 31 Apr 2001 00:00:00 GMT"), None);
        assert_eq!(parse(b"Thu, 01 Apr 2001 24:00:00 GMT"), None);
        assert_eq!(parse(b"Thu, 01 Apr 2001 00:60:00 GMT"), None);
        assert_eq!(parse(b"Thu, 01 Xyz 2001 00:00:00 GMT"), None);
        assert_eq!(parse(b"wrong"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"Thu, 01 Jan 1970 00:00"), None);
    }
}
