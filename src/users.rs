//! Who may sign in to the pages: the roles, what each may see and do, and passwords hashed
//! with argon2id (never stored or logged in clear). Pure: no database, no HTTP.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// A user's role. Each page and action names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Finds customers, sees what was sent and why, starts and cancels follow-ups,
    /// suppresses and unsuppresses addresses.
    Support,
    /// Sees the scenarios, their uplift, previews and segments; changes no customer.
    Marketer,
    /// Everything, and the audit log and the operations page.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Marketer => "marketer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "support" => Some(Role::Support),
            "marketer" => Some(Role::Marketer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may use something meant for `allowed` (admin may use everything).
    pub fn may(self, allowed: &[Role]) -> bool {
        self == Role::Admin || allowed.contains(&self)
    }
}

/// The shortest password `rebuy user add` takes.
pub const MIN_PASSWORD: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName,
    #[error("the password is shorter than {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Checks a user name: what the sign-in form and the audit log can show plainly.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName)
    }
}

/// The argon2id hash of `password` in PHC form, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::ShortPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches `hash` (a malformed hash matches nothing).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that no password matches, verified against when a user name is unknown so that
/// an unknown name takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("no password is this one").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_hashed_salted_and_verified() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct"));
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterz", &a));
        assert!(!verify_password("anything", "not a hash"));
        assert!(!verify_password("no password is this one!", decoy_hash()));
    }

    #[test]
    fn short_passwords_and_odd_names_are_refused() {
        assert_eq!(hash_password("short"), Err(UserError::ShortPassword));
        assert!(check_name("aya.sato@shop").is_ok());
        assert_eq!(check_name(""), Err(UserError::BadName));
        assert_eq!(check_name("a b"), Err(UserError::BadName));
        assert_eq!(check_name("<script>"), Err(UserError::BadName));
    }

    #[test]
    fn admin_may_everything_others_only_their_own() {
        assert!(Role::Admin.may(&[Role::Marketer]));
        assert!(Role::Support.may(&[Role::Support, Role::Marketer]));
        assert!(!Role::Support.may(&[Role::Marketer]));
        assert!(!Role::Marketer.may(&[Role::Support]));
        assert_eq!(Role::parse("marketer"), Some(Role::Marketer));
        assert_eq!(Role::parse("root"), None);
    }
}
