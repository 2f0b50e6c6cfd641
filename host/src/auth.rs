//! Sign-in on the host side: HS256 JSON Web Tokens, verified on every request before any
//! plugin code runs; the secret they are signed with; and the caller a token proves.
//!
//! Only HS256 is accepted (a token naming any other algorithm, `none` included, is refused),
//! signatures are compared in constant time, and expiry is always checked. Plugins never
//! see tokens, only the verified caller.

use std::{
    fmt,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use abi_stable::std_types::RString;
use anyhow::{bail, Context};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The issuer written into and required in every token.
pub const ISSUER: &str = "pixsim7";

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The longest token looked at; anything longer is malformed.
const MAX_TOKEN_LEN: usize = 4096;

/// A caller the host verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id (the token's subject).
    pub user_id: i64,
    /// The user's roles (in the ABI's string type, so that a plugin sees them borrowed).
    pub roles: Vec<RString>,
}

impl Caller {
    /// Whether the caller has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// Why a token was refused (logged at debug; the client only hears "Not authenticated").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or too long.
    Malformed,
    /// The header names an algorithm other than HS256.
    WrongAlgorithm,
    /// The signature does not match the secret.
    BadSignature,
    /// `exp` is in the past.
    Expired,
    /// The claims are not ours (missing fields, a subject that is not a user id, another
    /// issuer, not yet valid).
    InvalidClaims,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::WrongAlgorithm => "token algorithm is not HS256",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::InvalidClaims => "invalid token claims",
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    iss: String,
    iat: u64,
    exp: u64,
    /// Absent unless set: RFC 7519 makes `nbf` a number, and other JWT libraries refuse a
    /// token whose `nbf` is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    mac: Hmac<Sha256>,
}

impl TokenKeys {
    /// Keys from a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> anyhow::Result<TokenKeys> {
        if secret.len() < MIN_SECRET_LEN {
            bail!(
                "the JWT secret is {} bytes long; it must have at least {MIN_SECRET_LEN}",
                secret.len()
            );
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(TokenKeys { mac })
    }

    /// A token for `user_id` with `roles`, valid for `ttl` from now.
    pub fn issue(&self, user_id: i64, roles: &[String], ttl: Duration) -> String {
        let now = unix_now();
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
        };
        let claims = Claims {
            sub: user_id.to_string(),
            roles: roles.to_vec(),
            iss: ISSUER.into(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
        };
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"))
        );
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The caller a token proves, checked against the secret and the clock.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        self.verify_at(token, unix_now())
    }

    fn verify_at(&self, token: &str, now: u64) -> Result<Caller, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(header_part)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::WrongAlgorithm);
        }
        let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&decode(signature_part)?)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = serde_json::from_slice(&decode(payload_part)?)
            .map_err(|_| TokenError::InvalidClaims)?;
        if claims.iss != ISSUER || claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::InvalidClaims);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let user_id = claims.sub.parse().map_err(|_| TokenError::InvalidClaims)?;
        Ok(Caller {
            user_id,
            roles: claims.roles.into_iter().map(RString::from).collect(),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header: `Ok(None)` when there is no
/// header, `Err` when there is one but it is not a bearer token.
pub fn bearer_token(header: Option<&[u8]>) -> Result<Option<&str>, TokenError> {
    let Some(value) = header else { return Ok(None) };
    let value = std::str::from_utf8(value).map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token.trim()))
}

/// Where the secret came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `PIXSIM7_JWT_SECRET`.
    Environment,
    /// `--jwt-secret-file` / `jwt_secret_file`.
    File(PathBuf),
    /// Generated earlier in the data directory.
    DataDir(PathBuf),
    /// Generated now in the data directory.
    Generated(PathBuf),
}

/// The file in the data directory that holds a generated secret.
pub fn generated_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("jwt-secret")
}

/// Reads the configured secret: the environment, else the secret file; `None` if neither.
pub fn configured_secret(
    from_env: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<Option<(Vec<u8>, SecretSource)>> {
    if let Some(secret) = from_env.filter(|s| !s.is_empty()) {
        return Ok(Some((
            secret.as_bytes().to_vec(),
            SecretSource::Environment,
        )));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the JWT secret file {}", path.display()))?;
        return Ok(Some((
            text.trim().as_bytes().to_vec(),
            SecretSource::File(path.to_owned()),
        )));
    }
    Ok(None)
}

/// The secret in the data directory, created (random, file mode 0600) if missing.
pub fn data_dir_secret(data_dir: &Path) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    let path = generated_secret_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok((text.trim().as_bytes().to_vec(), SecretSource::DataDir(path))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("no randomness for a JWT secret")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written whole to a temporary file, then linked into place: a crash never leaves an
    // empty secret, and of two instances starting at once the second reads the first's.
    let temporary = data_dir.join(format!(".jwt-secret.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&temporary, &path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok((secret.into_bytes(), SecretSource::Generated(path))),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((text.trim().as_bytes().to_vec(), SecretSource::DataDir(path)))
        }
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a lifetime like `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("lifetime {text:?} is not like 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => bail!("lifetime {text:?} is not like 90s, 15m, 1h or 7d"),
    };
    if seconds == 0 {
        bail!("lifetime {text:?} must be longer than zero");
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_token_round_trips_and_expires() {
        let token = keys().issue(42, &["admin".into()], Duration::from_secs(60));
        let caller = keys().verify(&token).unwrap();
        assert_eq!(
            caller,
            Caller {
                user_id: 42,
                roles: vec!["admin".into()]
            }
        );
        assert_eq!(
            keys().verify_at(&token, unix_now() + 61),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn claims_hold_no_null_that_other_jwt_libraries_refuse() {
        let token = keys().issue(7, &[], Duration::from_secs(60));
        let payload = token.split('.').nth(1).unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert!(
            claims.as_object().unwrap().values().all(|v| !v.is_null()),
            "{claims}"
        );
    }

    #[test]
    fn tampering_and_other_algorithms_are_refused() {
        let token = keys().issue(1, &[], Duration::from_secs(60));
        let other = TokenKeys::new(b"another-secret-another-secret-xx").unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        // Promote ourselves to admin by editing the payload: the signature no longer fits.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"1","roles":["admin"],"iss":"pixsim7","iat":0,"exp":{}}}"#,
            unix_now() + 60
        ));
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(keys().verify(&forged), Err(TokenError::BadSignature));
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            keys().verify(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::WrongAlgorithm)
        );
        for junk in ["", "a", "a.b", "a.b.c.d", "!!.??.**", &"x".repeat(5000)] {
            assert!(keys().verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer_token(None), Ok(None));
        assert_eq!(bearer_token(Some(b"Bearer abc")), Ok(Some("abc")));
        assert_eq!(bearer_token(Some(b"bearer  abc ")), Ok(Some("abc")));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"abc",
            b"\xff\xfe",
        ] {
            assert!(bearer_token(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::new(b"short").is_err());
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
