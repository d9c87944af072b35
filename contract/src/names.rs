//! Names several crates must spell alike: Kubernetes labels, and the rules for
//! names that end up in DNS or in URL paths.

use sha2::{Digest, Sha256};

/// Label on every object the operator creates, so that it can find (and delete) them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The operator's name: the value of [`MANAGED_BY_LABEL`] and its server-side apply manager.
pub const MANAGER: &str = "idn-operator";

/// A DNS label as Kubernetes names use it (RFC 1123): 1 to 63 lowercase letters, digits and
/// '-', starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| alphanumeric(c) || c == '-')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}

/// Model and service names appear in URL paths, so they stay within one path segment.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The sha256 of `bytes` in lowercase hexadecimal, as model digests are written.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["edge", "edge-0", "0edge", "a"] {
            assert!(is_dns_label(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "Edge", "edge_0", "-edge", "edge-", long.as_str()] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn model_names_stay_in_one_path_segment() {
        assert!(is_model_name("mnist-mlp_v1.2"));
        assert!(!is_model_name("a/b"));
        assert!(!is_model_name(""));
    }

    #[test]
    fn sha256_of_the_empty_string() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
