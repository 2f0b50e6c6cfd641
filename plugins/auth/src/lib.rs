//! `auth`: sign-in for the game (`/api/v1/auth/...`). `POST /register` creates a user,
//! `POST /login` checks the password and answers a bearer token the host signed (the
//! `auth:issue` service), `GET /me` shows the signed-in user.
//!
//! Usernames: 3 to 32 characters, lower-case letters, digits, `_`, `-` and `.`, starting with
//! a letter (given in any case, stored lower-case, unique). Passwords: at least
//! `min_password_length` characters (default 8), at most 1024. Hashing is argon2id with the
//! crate's default (OWASP) parameters, run on the host's blocking pool so a login never
//! stalls the worker other requests share.
//!
//! Failed sign-ins are throttled by the host (`[login_throttle]`), per username and per
//! client address: before checking a password the plugin asks `auth.login_attempt`, which
//! refuses once a username or an address has had too many failures (429 with
//! `Retry-After`, even for the right password: that is what stops guessing) and otherwise
//! counts the attempt as a failure; a correct password then calls `auth.login_succeeded`,
//! which takes that back, so successful sign-ins never count. Unknown usernames go through
//! the same steps as known ones.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use plugin_api::{db::RowRef, prelude::*};

/// The plugin: its settings.
pub struct Auth {
    settings: Settings,
    /// Verified against when a username is unknown, so that answer takes as long as a wrong
    /// password and does not reveal which usernames exist.
    decoy_hash: String,
}

/// `[plugins.auth]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Lifetime of a token, in seconds (the host caps it at `max_token_ttl_secs`).
    #[serde(default = "default_ttl")]
    token_ttl_secs: u64,
    /// Usernames that get the `admin` role when they register.
    #[serde(default)]
    admin_usernames: Vec<String>,
    /// The shortest password accepted.
    #[serde(default = "default_min_password")]
    min_password_length: usize,
}

fn default_ttl() -> u64 {
    3600
}

fn default_min_password() -> usize {
    8
}

const MAX_PASSWORD_LENGTH: usize = 1024;

impl Plugin for Auth {
    const MANIFEST: PluginManifest =
        PluginManifest::new("auth", "Sign-in", env!("CARGO_PKG_VERSION"))
            .description("Registration, login and the signed-in user")
            .tags(&["auth"])
            .permissions(&[
                "db:read",
                "db:write",
                "auth:issue",
                "auth:throttle",
                "log:emit",
            ]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::post("/auth/register", "Create a user", register)
            .public()
            .request::<Registration>()
            .response::<UserView>(),
        Route::post(
            "/auth/login",
            "Exchange a username and password for a bearer token",
            login,
        )
        .public()
        .request::<Credentials>()
        .response::<TokenView>(),
        Route::get("/auth/me", "The signed-in user", me).response::<UserView>(),
    ];

    fn migrations() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            description: "users".into(),
            sql: include_str!("../migrations/0001_users.sql").into(),
        }]
    }

    async fn on_load(context: LoadContext) -> Result<Self, PluginError> {
        let mut settings: Settings = context.config_as()?;
        if settings.min_password_length < 8 {
            return Err(PluginError::new(format!(
                "min_password_length must be at least 8, got {}",
                settings.min_password_length
            )));
        }
        settings.admin_usernames = settings
            .admin_usernames
            .iter()
            .map(|u| u.to_lowercase())
            .collect();
        let host = context.host();
        let decoy_hash = host
            .run_blocking(|| hash_password("decoy password for unknown users"))
            .await
            .map_err(|e| PluginError::new(e.to_string()))?
            .map_err(PluginError::new)?;
        Ok(Auth {
            settings,
            decoy_hash,
        })
    }
}

/// `POST /auth/register` and `POST /auth/login`.
#[derive(Deserialize, JsonSchema)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `POST /auth/register`: the rules a new user's name and password follow (those of
/// `check_username` and `check_password`, for the default `min_password_length`).
#[derive(Deserialize, JsonSchema)]
pub struct Registration {
    /// 3 to 32 characters: ASCII letters, digits, `_`, `-` or `.`, starting with a letter
    /// (kept in lower case).
    #[schemars(pattern(r"^[A-Za-z][A-Za-z0-9_.-]{2,31}$"))]
    username: String,
    /// At least `min_password_length` (by default 8) and at most 1024 characters.
    #[schemars(length(min = 8, max = 1024))]
    password: String,
}

/// A user.
#[derive(Serialize, JsonSchema)]
pub struct UserView {
    id: i64,
    username: String,
    roles: Vec<String>,
}

/// A login's answer.
#[derive(Serialize, JsonSchema)]
pub struct TokenView {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

async fn register(plugin: &Auth, request: Request<'_>) -> Result<(u16, Json<UserView>), ApiError> {
    let credentials: Registration = request.json()?;
    let username = check_username(&credentials.username)?;
    check_password(&credentials.password, plugin.settings.min_password_length)?;
    if find_user(request.host(), &username).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "username {username} is already taken"
        )));
    }
    let password = credentials.password;
    let hash = request
        .host()
        .run_blocking(move || hash_password(&password))
        .await?
        .map_err(ApiError::internal)?;
    let roles: Vec<String> = if plugin.settings.admin_usernames.contains(&username) {
        vec!["admin".to_owned()]
    } else {
        Vec::new()
    };
    let inserted = request.host().db_execute(
            "INSERT INTO auth__users (username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4)",
            params![&username, hash, json!(roles).to_string(), unix_now()],
        )
        .await;
    if let Err(error) = inserted {
        // Two registrations of one name at once: the unique index decides, the loser hears 409.
        if error.to_string().to_lowercase().contains("unique") {
            return Err(ApiError::conflict(format!(
                "username {username} is already taken"
            )));
        }
        return Err(error.into());
    }
    let user = find_user(request.host(), &username)
        .await?
        .ok_or_else(|| ApiError::internal("a registered user vanished"))?;
    log::info!("registered user {} ({})", user.id, user.username);
    Ok((201, Json(user.view())))
}

async fn login(plugin: &Auth, request: Request<'_>) -> Result<Json<TokenView>, ApiError> {
    let credentials: Credentials = request.json()?;
    let username = credentials.username.trim().to_lowercase();
    // Before anything costly: a throttled attempt checks no password, known user or not.
    if let Some(refused) = request.host().login_attempt(&username).await?.refused {
        let seconds = refused.retry_after_secs;
        return Err(ApiError::too_many_requests(
            seconds,
            format!("Too many failed sign-in attempts; try again in {seconds} seconds"),
        ));
    }
    let user = find_user(request.host(), &username).await?;
    let stored = user
        .as_ref()
        .map_or(plugin.decoy_hash.clone(), |u| u.password_hash.clone());
    let password = credentials.password;
    let matches = request
        .host()
        .run_blocking(move || verify_password(&password, &stored))
        .await?;
    let Some(user) = user.filter(|_| matches) else {
        // The attempt stays counted as a failure.
        return Err(ApiError::new(401, "Incorrect username or password"));
    };
    request.host().login_succeeded(&username).await?;
    let issued = request
        .host()
        .issue_token(user.id, user.roles.clone(), plugin.settings.token_ttl_secs)
        .await?;
    Ok(Json(TokenView {
        access_token: issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
    }))
}

async fn me(_: &Auth, request: Request<'_>) -> Result<Json<UserView>, ApiError> {
    let user_id = request.user_id()?;
    let rows = request
        .host()
        .db_query(
            "SELECT id, username, password_hash, roles FROM auth__users WHERE id = $1",
            params![user_id],
        )
        .await?;
    let user = rows
        .first()
        .map(User::from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found(format!("User {user_id} not found")))?;
    Ok(Json(user.view()))
}

struct User {
    id: i64,
    username: String,
    password_hash: String,
    roles: Vec<String>,
}

impl User {
    fn from_row(row: RowRef<'_>) -> Result<User, ApiError> {
        let roles: String = row.get("roles")?;
        Ok(User {
            id: row.get("id")?,
            username: row.get("username")?,
            password_hash: row.get("password_hash")?,
            roles: plugin_api::serde_json::from_str(&roles)
                .map_err(|e| ApiError::internal(format!("user roles are not a JSON list: {e}")))?,
        })
    }

    fn view(&self) -> UserView {
        UserView {
            id: self.id,
            username: self.username.clone(),
            roles: self.roles.clone(),
        }
    }
}

async fn find_user(host: &Host, username: &str) -> Result<Option<User>, ApiError> {
    let rows = host
        .db_query(
            "SELECT id, username, password_hash, roles FROM auth__users WHERE username = $1",
            params![username],
        )
        .await?;
    rows.first().map(User::from_row).transpose()
}

fn check_username(raw: &str) -> Result<String, ApiError> {
    let username = raw.trim().to_lowercase();
    let valid = (3..=32).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_lowercase())
        && username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(username)
    } else {
        Err(ApiError::validation(
            "value_error",
            vec![json!("body"), json!("username")],
            "username must be 3 to 32 characters: letters, digits, '_', '-' or '.', starting with a letter",
        ))
    }
}

fn check_password(password: &str, min: usize) -> Result<(), ApiError> {
    let length = password.chars().count();
    if (min..=MAX_PASSWORD_LENGTH).contains(&length) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "value_error",
            vec![json!("body"), json!("password")],
            format!("password must be {min} to {MAX_PASSWORD_LENGTH} characters"),
        ))
    }
}

fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("password hashing failed: {e}"))
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

export_plugin!(Auth);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords() {
        assert_eq!(check_username(" Mara.Vale ").unwrap(), "mara.vale");
        for bad in ["ab", "1mara", "mara vale", "mära", &"a".repeat(33)] {
            assert_eq!(check_username(bad).unwrap_err().status(), 422, "{bad}");
        }
        assert!(check_password("correct horse", 8).is_ok());
        assert_eq!(check_password("short", 8).unwrap_err().status(), 422);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
