//! `BACKUP_S3_URL`: `s3://BUCKET` or `s3://BUCKET/PREFIX`.

/// A bucket and a key prefix inside it (no leading or trailing `/`; empty for the
/// bucket's root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    bucket: String,
    prefix: String,
}

/// Why a `BACKUP_S3_URL` was refused. The value itself is never repeated: an
/// operator who pasted credentials into it should not find them in a log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("BACKUP_S3_URL: {reason}")]
pub struct InvalidLocation {
    reason: &'static str,
}

impl Location {
    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix, `""` for none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl std::str::FromStr for Location {
    type Err = InvalidLocation;

    fn from_str(text: &str) -> Result<Location, InvalidLocation> {
        let invalid = |reason| InvalidLocation { reason };
        let rest = text
            .trim()
            .strip_prefix("s3://")
            .ok_or(invalid("expected s3://BUCKET or s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains(['@', ':']) {
            return Err(invalid(
                "credentials and ports do not belong in the URL (AWS_* variables, AWS_ENDPOINT_URL)",
            ));
        }
        // S3's bucket naming rules: 3–63 of a-z, 0-9, '.', '-', alphanumeric at both ends.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b".-".contains(&byte)
            })
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(invalid(
                "the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        let parts_are_plain = prefix.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.chars().any(|c| c.is_control() || c == '\\')
        });
        if !prefix.is_empty() && !parts_are_plain {
            return Err(invalid(
                "the prefix must be plain path segments (no empty, '.', '..' or control characters)",
            ));
        }
        Ok(Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}
