//! Password hashing with argon2id (the crate's defaults follow the OWASP recommendation).

use std::sync::LazyLock;

use anyhow::Context;
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Hashes a password into a PHC string (algorithm, parameters, salt and hash).
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("{err}"))
        .context("Failed to hash a password")
}

/// Whether the password matches the stored PHC string.
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the time of one verification without a stored hash, so that a login for an unknown
/// email takes as long as one with a wrong password and does not reveal which emails exist.
pub fn verify_nothing(password: &str) {
    // Hashed once per process, with the same parameters as real hashes.
    static DUMMY: LazyLock<Option<String>> =
        LazyLock::new(|| hash("no password matches this").ok());
    if let Some(dummy) = DUMMY.as_deref() {
        let _ = verify(dummy, password);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let stored = super::hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify(&stored, "correct horse"));
        assert!(!super::verify(&stored, "wrong horse"));
        assert!(!super::verify("not a hash", "correct horse"));
    }
}
