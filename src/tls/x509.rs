//! The few facts of an X.509 certificate that OpenSSL-compatible backend
//! verification needs beyond what webpki checks: the subject's common
//! names, the subjectAltName DNS names and addresses, and the validity
//! period. A small DER reader, enough for certificates; anything it cannot
//! read makes the certificate unusable for those fallbacks (never more
//! trusted).

use std::net::IpAddr;

/// What [`facts`] reads from a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject common names (OID 2.5.4.3), in order.
    pub common_names: Vec<String>,
    /// Issuer common names, in order.
    pub issuer_common_names: Vec<String>,
    /// The subject as OpenSSL prints it in RFC 2253 form
    /// (`CN=client,O=Example`: last RDN first), nginx's `$ssl_client_s_dn`.
    pub subject_dn: String,
    /// The issuer, in the same form (`$ssl_client_i_dn`).
    pub issuer_dn: String,
    /// The serial number's bytes, big-endian (`$ssl_client_serial`).
    pub serial: Vec<u8>,
    /// subjectAltName DNS names.
    pub dns_names: Vec<String>,
    /// subjectAltName IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether the certificate has a subjectAltName extension at all.
    pub has_san: bool,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// The public key's AlgorithmIdentifier (content, without the outer
    /// SEQUENCE header), as signature algorithms name their keys.
    pub key_algorithm: Vec<u8>,
    /// The subjectPublicKey bits.
    pub public_key: Vec<u8>,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` EXPLICIT version.
const VERSION: u8 = 0xa0;
/// `[3]` EXPLICIT extensions.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `[2]` dNSName.
const SAN_DNS: u8 = 0x82;
/// GeneralName `[7]` iPAddress.
const SAN_IP: u8 = 0x87;

const INTEGER: u8 = 0x02;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Attribute short names OpenSSL prints in distinguished names.
const ATTRIBUTE_NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x04], "SN"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x09], "street"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x0c], "title"),
    (&[0x55, 0x04, 0x2a], "GN"),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// A dotted OID (`1.2.840.113549.1.9.1`) for attributes without a short
/// name.
fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < oid.len() {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        }
    }
    parts.join(".")
}

/// A distinguished name as OpenSSL's `XN_FLAG_RFC2253` prints it: RDNs
/// last first, separated by `,`, attributes of one RDN by `+`, special
/// characters escaped with `\`.
fn rfc2253(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut rdn, rest) = expect(name, SET)?;
        name = rest;
        let mut attrs = Vec::new();
        while !rdn.is_empty() {
            let (attr, more) = expect(rdn, SEQUENCE)?;
            rdn = more;
            let (oid, value) = expect(attr, OID)?;
            let (_, text, _) = tlv(value)?;
            let key = ATTRIBUTE_NAMES
                .iter()
                .find(|(o, _)| *o == oid)
                .map_or_else(|| dotted(oid), |(_, n)| n.to_string());
            attrs.push(format!(
                "{key}={}",
                escape_dn(&String::from_utf8_lossy(text))
            ));
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Splits one tag-length-value off `input`: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Reads an element that must have tag `want`.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, value, rest) = tlv(input)?;
    (tag == want).then_some((value, rest))
}

/// Reads the facts of a DER certificate, or `None` if it is malformed.
pub fn facts(der: &[u8]) -> Option<CertFacts> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if tbs.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    let (serial_tag, serial, after) = tlv(rest)?;
    let (_sig_alg, after) = expect(after, SEQUENCE)?;
    let (issuer, after) = expect(after, SEQUENCE)?;
    let (validity, after) = expect(after, SEQUENCE)?;
    let (subject, after) = expect(after, SEQUENCE)?;
    let (spki, mut after) = expect(after, SEQUENCE)?;

    let mut facts = CertFacts::default();
    let (not_before, more) = time(validity)?;
    let (not_after, _) = time(more)?;
    facts.not_before = not_before;
    facts.not_after = not_after;
    facts.common_names = common_names(subject)?;
    facts.issuer_common_names = common_names(issuer)?;
    facts.subject_dn = rfc2253(subject)?;
    facts.issuer_dn = rfc2253(issuer)?;
    if serial_tag == INTEGER {
        facts.serial = serial.to_vec();
    }
    let (algorithm, key) = expect(spki, SEQUENCE)?;
    let (bits, _) = expect(key, BIT_STRING)?;
    facts.key_algorithm = algorithm.to_vec();
    facts.public_key = bits.get(1..)?.to_vec();

    while let Some((tag, value, more)) = tlv(after) {
        after = more;
        if tag == EXTENSIONS {
            read_extensions(value, &mut facts)?;
        }
    }
    Some(facts)
}

fn common_names(mut name: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    while !name.is_empty() {
        let (mut rdn, rest) = expect(name, SET)?;
        name = rest;
        while !rdn.is_empty() {
            let (attr, more) = expect(rdn, SEQUENCE)?;
            rdn = more;
            let (oid, value) = expect(attr, OID)?;
            if oid == OID_COMMON_NAME {
                let (_, text, _) = tlv(value)?;
                names.push(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    Some(names)
}

fn read_extensions(value: &[u8], facts: &mut CertFacts) -> Option<()> {
    let (mut list, _) = expect(value, SEQUENCE)?;
    while !list.is_empty() {
        let (ext, rest) = expect(list, SEQUENCE)?;
        list = rest;
        let (oid, mut body) = expect(ext, OID)?;
        if body.first() == Some(&BOOLEAN) {
            body = tlv(body)?.2;
        }
        let (octets, _) = expect(body, OCTET_STRING)?;
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        facts.has_san = true;
        let (mut names, _) = expect(octets, SEQUENCE)?;
        while !names.is_empty() {
            let (tag, name, rest) = tlv(names)?;
            names = rest;
            match tag {
                SAN_DNS => facts
                    .dns_names
                    .push(String::from_utf8_lossy(name).into_owned()),
                SAN_IP => match name.len() {
                    4 => facts
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 4]>::try_from(name).ok()?)),
                    16 => facts
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(name).ok()?)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(())
}

/// A UTCTime or GeneralizedTime, as seconds since the epoch.
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, value, rest) = tlv(input)?;
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let full = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            let century = if yy < 50 { "20" } else { "19" };
            format!("{century}{text}")
        }
        GENERALIZED_TIME if text.len() == 14 => text.to_string(),
        _ => return None,
    };
    let at = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok()?;
    Some((at.and_utc().timestamp(), rest))
}

/// OpenSSL's host name check: case-insensitive, a `*` allowed as the
/// whole leftmost label of the pattern, matching exactly one label.
pub fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let name = name.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        let Some((label, rest)) = name.split_once('.') else {
            return false;
        };
        return !label.is_empty() && suffix.contains('.') && rest.eq_ignore_ascii_case(suffix);
    }
    pattern.eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_names_and_validity() {
        let mut p = rcgen::CertificateParams::new(vec![
            "example.com".to_string(),
            "*.example.com".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "no.match.example.com");
        p.not_before = rcgen::date_time_ymd(2020, 1, 2);
        p.not_after = rcgen::date_time_ymd(2060, 3, 4);
        let f = facts(&cert(p)).unwrap();
        assert_eq!(f.common_names, ["no.match.example.com"]);
        assert_eq!(f.dns_names, ["example.com", "*.example.com"]);
        assert_eq!(f.ip_addresses, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(f.has_san);
        assert_eq!(f.not_before, 1_577_923_200);
        assert_eq!(f.not_after, 2_845_584_000);
        assert_eq!(f.public_key.len(), 65, "an uncompressed P-256 point");
    }

    #[test]
    fn distinguished_names_and_serial_as_openssl_prints_them() {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Yard, Inc. #1 ");
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let f = facts(&cert(p)).unwrap();
        assert_eq!(f.subject_dn, "CN=Yard\\, Inc. #1\\ ");
        assert_eq!(f.issuer_dn, f.subject_dn, "self-signed");
        assert_eq!(f.serial, [0x0a, 0xbc]);
        // Two RDNs, CN then O as encoded: printed last first.
        let rdn = |oid: &[u8], v: &[u8]| {
            let mut attr = vec![OID, oid.len() as u8];
            attr.extend_from_slice(oid);
            attr.extend_from_slice(&[0x0c, v.len() as u8]);
            attr.extend_from_slice(v);
            let mut seq = vec![SEQUENCE, attr.len() as u8];
            seq.extend(attr);
            let mut set = vec![SET, seq.len() as u8];
            set.extend(seq);
            set
        };
        let mut name = rdn(OID_COMMON_NAME, b"a");
        name.extend(rdn(&[0x55, 0x04, 0x0a], b"b"));
        name.extend(rdn(&[0x2b, 0x06, 0x01], b"c"));
        assert_eq!(rfc2253(&name).unwrap(), "1.3.6.1=c,O=b,CN=a");
    }

    #[test]
    fn common_name_only_certificates() {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "2.example.com");
        let f = facts(&cert(p)).unwrap();
        assert_eq!(f.common_names, ["2.example.com"]);
        assert!(!f.has_san && f.dns_names.is_empty());
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(facts(b""), None);
        assert_eq!(facts(&[0x30, 0x82, 0xff]), None);
        assert_eq!(facts(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }

    #[test]
    fn malformed_times_are_refused_not_fatal() {
        // A UTCTime of 13 bytes whose first character is multi-byte.
        let mut t = vec![UTC_TIME, 13];
        t.extend_from_slice("€123456789Z".as_bytes());
        assert_eq!(time(&t), None);
        let mut g = vec![GENERALIZED_TIME, 15];
        g.extend_from_slice("2020x1021200Z..".as_bytes());
        assert_eq!(time(&g[..17]), None);
    }

    #[test]
    fn host_name_matching_follows_openssl() {
        assert!(dns_name_matches("example.com", "EXAMPLE.com"));
        assert!(dns_name_matches("*.example.com", "foo.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("*.com", "example.com"));
        assert!(!dns_name_matches("example.com", "no.match.example.com"));
    }
}
