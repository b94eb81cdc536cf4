//! Encryption at rest: the key hierarchy behind StartStreamEncryption.
//!
//! - A **master key** (32 random bytes) lives in a file in the data directory (`master.key`,
//!   created at first start with mode 0600) or where `[encryption] master_key_file` says.
//! - A **key-encryption key** per KMS `KeyId` is derived from it with HKDF-SHA256 (the id in its
//!   canonical form, so an alias name and its alias ARN are one key). No KMS is involved: the
//!   daemon is its own key service, and `alias/aws/kinesis` is the built-in default key.
//! - A **data key** per segment (32 random bytes) seals that segment's batches with AES-256-GCM
//!   (a random 96-bit nonce per batch, the batch header as associated data). The segment header
//!   holds the data key wrapped (AES-256-GCM) under the key-encryption key, and the KeyId.
//!
//! So the segment files never hold plaintext of an encrypted stream, a damaged ciphertext fails
//! its tag (and its batch checksum) and is never served, and losing the master key loses the
//! encrypted data: back it up with the data directory. Owns: the master key file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

pub const MASTER_KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// A data key wrapped under a key-encryption key: nonce, ciphertext, tag.
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
/// The key a stream is encrypted with when the caller names AWS's managed key.
pub const DEFAULT_KEY_ID: &str = "alias/aws/kinesis";

/// The daemon's master key, from which every key-encryption key is derived.
pub struct KeyRing {
    master: [u8; MASTER_KEY_LEN],
}

impl KeyRing {
    pub fn from_bytes(master: [u8; MASTER_KEY_LEN]) -> KeyRing {
        KeyRing { master }
    }

    /// Reads the master key at `path`, or creates it (mode 0600, synced) if there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<KeyRing> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let master: [u8; MASTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::other(format!(
                        "{} holds {} bytes; a master key is {MASTER_KEY_LEN}",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                Ok(KeyRing { master })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut master = [0u8; MASTER_KEY_LEN];
                getrandom::getrandom(&mut master).map_err(std::io::Error::other)?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(&master)?;
                f.sync_all()?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(KeyRing { master })
            }
            Err(e) => Err(e),
        }
    }

    /// A fingerprint of the master key (not the key): the data directory records it when a
    /// stream is first encrypted, and start-up refuses a different master key from then on.
    pub fn fingerprint(&self) -> [u8; 16] {
        let hk = Hkdf::<Sha256>::new(Some(b"sluice master key fingerprint v1"), &self.master);
        let mut out = [0u8; 16];
        hk.expand(b"fingerprint", &mut out).expect("16 bytes is a valid HKDF output length");
        out
    }

    fn kek(&self, key_id: &str) -> Aes256Gcm {
        let hk = Hkdf::<Sha256>::new(Some(b"sluice key-encryption key v1"), &self.master);
        let mut okm = [0u8; 32];
        hk.expand(canonical_key_id(key_id).as_bytes(), &mut okm).expect("32 bytes is a valid HKDF output length");
        Aes256Gcm::new_from_slice(&okm).expect("a 32-byte key")
    }

    /// A fresh data key for `key_id`, and its wrapped form for the segment header.
    pub fn new_data_key(&self, key_id: &str) -> std::io::Result<(DataKey, Vec<u8>)> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(std::io::Error::other)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(std::io::Error::other)?;
        let aad = canonical_key_id(key_id);
        let sealed = self
            .kek(key_id)
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &key, aad: aad.as_bytes() })
            .map_err(|_| std::io::Error::other("wrapping a data key failed"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok((DataKey::from_bytes(&key), wrapped))
    }

    /// The data key wrapped in a segment header; `None` if it does not open under `key_id`
    /// (another master key, or damage).
    pub fn unwrap_data_key(&self, key_id: &str, wrapped: &[u8]) -> Option<DataKey> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return None;
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let key = self
            .kek(key_id)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: canonical_key_id(key_id).as_bytes() })
            .ok()?;
        Some(DataKey::from_bytes(&key))
    }
}

/// The key that seals one segment's batches.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn from_bytes(key: &[u8]) -> DataKey {
        DataKey { cipher: Aes256Gcm::new_from_slice(key).expect("a 32-byte key") }
    }

    /// `nonce | ciphertext | tag` of `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's random source does not fail on Linux once booted; a zero nonce would
        // only ever repeat with another failure, and the tag still protects integrity.
        let _ = getrandom::getrandom(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of a bounded buffer does not fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a sealed buffer, or `None` if it was altered (or sealed under another key).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

/// A KMS key id in one spelling per key: `alias/<name>` for alias names and alias ARNs,
/// `key/<id>` for key ids and key ARNs. Anything else is taken as given.
pub fn canonical_key_id(id: &str) -> String {
    let resource = match id.strip_prefix("arn:") {
        // arn:aws:kms:<region>:<account>:<resource>
        Some(_) => id.splitn(6, ':').nth(5).unwrap_or(id),
        None => id,
    };
    if resource.starts_with("alias/") || resource.starts_with("key/") {
        resource.to_owned()
    } else {
        format!("key/{resource}")
    }
}

/// Whether `id` is a KeyId AWS accepts: a key ARN, an alias ARN, an alias name or a key id.
pub fn is_valid_key_id(id: &str) -> bool {
    let ok_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c));
    if let Some(rest) = id.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return parts.len() == 5
            && parts[0].starts_with("aws")
            && parts[1] == "kms"
            && parts[3].len() == 12
            && parts[3].bytes().all(|b| b.is_ascii_digit())
            && (parts[4].strip_prefix("key/").is_some_and(ok_name)
                || parts[4].strip_prefix("alias/").is_some_and(ok_name));
    }
    match id.strip_prefix("alias/") {
        Some(name) => ok_name(name),
        None => !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
    }
}

static GLOBAL: OnceLock<Arc<KeyRing>> = OnceLock::new();

/// Installs the daemon's key ring (once, at start-up); later calls keep the first.
pub fn install(ring: KeyRing) -> Arc<KeyRing> {
    GLOBAL.get_or_init(|| Arc::new(ring)).clone()
}

/// The metadata key under which the data directory records its master key's fingerprint.
pub const FINGERPRINT_META_KEY: &str = "keys/master_fingerprint";

/// The key ring, once installed.
pub fn global() -> Option<Arc<KeyRing>> {
    GLOBAL.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_wrap_under_the_key_they_name() {
        let ring = KeyRing::from_bytes([7; 32]);
        let (key, wrapped) = ring.new_data_key("alias/aws/kinesis").unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        let same = ring.unwrap_data_key("arn:aws:kms:us-east-1:123456789012:alias/aws/kinesis", &wrapped).unwrap();
        let sealed = key.seal(b"aad", b"secret");
        assert_eq!(same.open(b"aad", &sealed).unwrap(), b"secret", "an alias ARN is the same key as its name");
        assert!(ring.unwrap_data_key("alias/other", &wrapped).is_none());
        assert!(KeyRing::from_bytes([8; 32]).unwrap_data_key("alias/aws/kinesis", &wrapped).is_none());
    }

    #[test]
    fn sealed_batches_detect_any_change() {
        let key = DataKey::from_bytes(&[1; 32]);
        let sealed = key.seal(b"header", b"plaintext payload");
        assert!(!sealed.windows(9).any(|w| w == b"plaintext"));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(b"header", &bad).is_none(), "byte {i}");
        }
        assert!(key.open(b"other header", &sealed).is_none());
    }

    #[test]
    fn key_ids_as_aws_takes_them() {
        for ok in [
            "alias/aws/kinesis",
            "alias/my-key",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:alias/my-key",
        ] {
            assert!(is_valid_key_id(ok), "{ok}");
        }
        for bad in ["", "alias/", "not a key", "arn:aws:s3:::bucket", "arn:aws:kms:us-east-1:12:key/x"] {
            assert!(!is_valid_key_id(bad), "{bad}");
        }
        assert_eq!(canonical_key_id("1234abcd-12ab"), "key/1234abcd-12ab");
        assert_eq!(canonical_key_id("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab"), "key/1234abcd-12ab");
    }

    #[test]
    fn the_master_key_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = KeyRing::load_or_create(&path).unwrap();
        let b = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(a.master, b.master);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
