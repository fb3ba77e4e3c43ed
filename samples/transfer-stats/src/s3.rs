//! One S3 PUT, signed with Signature Version 4 by hand: the task's scoped credentials come in
//! the environment, as Lambda gives them to any function. `AWS_ENDPOINT_URL_S3` (path-style
//! addressing, as the local stack needs) overrides the regional endpoint (virtual-hosted, https).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::env;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write `body` as `name` under `TRACE_OUTPUT_PREFIX`; its `s3://` URI.
pub fn put_output(name: &str, body: &[u8]) -> Result<String, String> {
    let prefix = var("TRACE_OUTPUT_PREFIX")?;
    let (bucket, key_prefix) = prefix
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("TRACE_OUTPUT_PREFIX {prefix:?} is not s3://bucket/prefix/"))?;
    let key = format!("{key_prefix}{name}");
    let (url, host, path) = match env::var("AWS_ENDPOINT_URL_S3") {
        Ok(endpoint) => {
            let endpoint = endpoint.trim_end_matches('/');
            let host = endpoint
                .split_once("://")
                .map_or(endpoint, |(_, host)| host);
            let path = format!("/{bucket}/{}", uri_encode(&key));
            (format!("{endpoint}{path}"), host.to_owned(), path)
        }
        Err(_) => {
            let host = format!("{bucket}.s3.{}.amazonaws.com", var("AWS_REGION")?);
            let path = format!("/{}", uri_encode(&key));
            (format!("https://{host}{path}"), host, path)
        }
    };
    let request = Signed::new(&host, &path, body, SystemTime::now())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut put = agent.put(&url).header("content-type", "application/json");
    for (name, value) in &request.headers {
        put = put.header(*name, value);
    }
    let mut response = put
        .send(body)
        .map_err(|error| format!("PUT {url}: {error}"))?;
    if !response.status().is_success() {
        let detail = response.body_mut().read_to_string().unwrap_or_default();
        return Err(format!("PUT {url}: {} {detail}", response.status()));
    }
    Ok(format!("s3://{bucket}/{key}"))
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The headers that sign one PUT of `body` to `host` + `path`.
struct Signed {
    headers: Vec<(&'static str, String)>,
}

impl Signed {
    fn new(host: &str, path: &str, body: &[u8], now: SystemTime) -> Result<Self, String> {
        let (access_key, secret) = (var("AWS_ACCESS_KEY_ID")?, var("AWS_SECRET_ACCESS_KEY")?);
        let region = var("AWS_REGION")?;
        let (date, time) = utc(now);
        let stamp = format!("{date}T{time}Z");
        let payload = hex(&Sha256::digest(body));
        let mut signed = vec![
            ("host", host.to_owned()),
            ("x-amz-content-sha256", payload.clone()),
            ("x-amz-date", stamp.clone()),
        ];
        if let Ok(token) = env::var("AWS_SESSION_TOKEN") {
            signed.push(("x-amz-security-token", token));
        }
        let names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();
        let names = names.join(";");
        let canonical_headers: String = signed
            .iter()
            .map(|(name, value)| format!("{name}:{}\n", value.trim()))
            .collect();
        let canonical = format!("PUT\n{path}\n\n{canonical_headers}\n{names}\n{payload}");
        let scope = format!("{date}/{region}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex(&Sha256::digest(canonical))
        );
        let key = [region.as_str(), "s3", "aws4_request"].iter().fold(
            hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes()),
            |key, part| hmac(&key, part.as_bytes()),
        );
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        signed.remove(0); // the client writes Host itself, from the URL
        signed.push((
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, \
                 Signature={signature}"
            ),
        ));
        Ok(Signed { headers: signed })
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// `SigV4`'s encoding of an object key: every byte but the unreserved ones and `/` as %XX.
fn uri_encode(key: &str) -> String {
    key.bytes().fold(String::new(), |mut out, byte| {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(byte));
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        out
    })
}

/// `now` in UTC as `SigV4` writes it: (`YYYYMMDD`, `HHMMSS`).
fn utc(now: SystemTime) -> (String, String) {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days.cast_signed());
    let time = format!(
        "{:02}{:02}{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    (format!("{year:04}{month:02}{day:02}"), time)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}
