//! Access tokens (short-lived JWTs), refresh tokens and human-typable codes.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::access::{Actor, Role};

const ISSUER: &str = "veldwerk";

/// The claims of an access token. Do not modify lightly: tokens already issued carry these.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user.
    sub: Uuid,
    /// The device (session) the token was issued to.
    sid: Uuid,
    role: String,
    /// The provider the user belongs to.
    prv: Uuid,
    /// The participant's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<Uuid>,
    iss: String,
    iat: u64,
    exp: u64,
}

/// Signs and verifies access tokens (HS256).
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], ttl: Duration) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked to the second; the refresh flow covers clients whose token just ran out.
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret).context("Failed to load the JWT secret")?,
            decoding: DecodingKey::from_secret(secret).context("Failed to load the JWT secret")?,
            validation,
            ttl,
        })
    }

    /// Lifetime of the tokens this issuer signs.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for the actor.
    pub fn issue(&self, actor: &Actor) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: actor.user_id,
            sid: actor.device_id,
            role: actor.role.as_str().to_owned(),
            prv: actor.provider_id,
            org: actor.organisation_id,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("Failed to sign an access token")
    }

    /// Verifies signature, issuer and expiry; `None` for any invalid token.
    pub fn verify(&self, token: &str) -> Option<Actor> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        Some(Actor {
            user_id: claims.sub,
            device_id: claims.sid,
            role: Role::parse(&claims.role)?,
            provider_id: claims.prv,
            organisation_id: claims.org,
        })
    }
}

/// 32 random bytes, hex-encoded: a refresh token.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).context("Failed to read random bytes")?;
    Ok(hex(&bytes))
}

/// The refresh token that succeeds `predecessor`: HMAC-SHA-256 under the server's secret, so the
/// server can give the same successor again when the answer to a refresh was lost (see
/// `Services::refresh`), without storing any token in a form that could be used.
pub fn successor_token(secret: &str, predecessor: &str) -> String {
    hex(&hmac_sha256(secret.as_bytes(), predecessor.as_bytes()))
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The SHA-256 of a token, hex-encoded: what the database stores.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Letters and digits that cannot be mistaken for each other when read aloud or typed on a
/// phone (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A random code of `len` characters from [`CODE_ALPHABET`], e.g. for an invite.
pub fn random_code(len: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).context("Failed to read random bytes")?;
    // 256 is not a multiple of 31; the bias this leaves (at most 1 in 8) is harmless for
    // single-use, expiring, rate-limited codes of 40 bits.
    Ok(bytes
        .iter()
        .map(|byte| CODE_ALPHABET[*byte as usize % CODE_ALPHABET.len()] as char)
        .collect())
}

/// Brings a typed code to its stored form: upper case, without spaces or dashes.
pub fn normalise_code(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor {
            user_id: Uuid::now_v7(),
            device_id: Uuid::now_v7(),
            role: Role::Participant,
            provider_id: Uuid::now_v7(),
            organisation_id: Some(Uuid::now_v7()),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_the_same_actor() {
        let issuer = TokenIssuer::new(&[7; 32], Duration::from_secs(60)).unwrap();
        let actor = actor();
        let verified = issuer.verify(&issuer.issue(&actor).unwrap()).unwrap();
        assert_eq!(verified.user_id, actor.user_id);
        assert_eq!(verified.device_id, actor.device_id);
        assert_eq!(verified.role, Role::Participant);
        assert_eq!(verified.organisation_id, actor.organisation_id);
    }

    #[test]
    fn a_token_signed_with_another_secret_or_tampered_is_rejected() {
        let issuer = TokenIssuer::new(&[7; 32], Duration::from_secs(60)).unwrap();
        let other = TokenIssuer::new(&[8; 32], Duration::from_secs(60)).unwrap();
        let token = other.issue(&actor()).unwrap();
        assert!(issuer.verify(&token).is_none());
        let mut tampered = issuer.issue(&actor()).unwrap();
        tampered.push('x');
        assert!(issuer.verify(&tampered).is_none());
    }

    #[test]
    fn an_expired_token_is_rejected() {
        let issuer = TokenIssuer::new(&[7; 32], Duration::from_secs(0)).unwrap();
        let token = issuer.issue(&actor()).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(issuer.verify(&token).is_none());
    }

    #[test]
    fn codes_use_the_unambiguous_alphabet_and_normalise_typing() {
        let code = random_code(8).unwrap();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(normalise_code(" abcd-efgh "), "ABCDEFGH");
    }

    #[test]
    fn token_hashes_are_stable_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(successor_token("k", "a"), successor_token("k", "b"));
        assert_ne!(successor_token("k", "a"), successor_token("l", "a"));
    }
}
