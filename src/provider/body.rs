//! Reading a response body with a ceiling.
//!
//! A provider answer is a few kilobytes; a server (or a proxy in front of
//! it) that sends gigabytes must not make the process hold gigabytes. Both
//! HTTP clients read bodies through [`read_capped`]: a declared length over
//! the cap fails before any of the body is read, and a streamed body fails
//! as soon as it passes the cap, so memory stays within the cap.

use std::fmt;

/// The default ceiling of one response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the cap: what the server declared, if it
    /// did, and how much was read before giving up.
    TooLarge {
        cap: usize,
        declared: Option<u64>,
        read: usize,
    },
    /// The transfer itself failed.
    Transport(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge {
                cap,
                declared: Some(len),
                ..
            } => write!(
                f,
                "the response body is {} ({len} bytes), over the limit of {} ({cap} bytes)",
                human(*len as usize),
                human(*cap)
            ),
            BodyError::TooLarge { cap, read, .. } => write!(
                f,
                "the response body passed the limit of {} ({cap} bytes) after {read} bytes",
                human(*cap)
            ),
            BodyError::Transport(e) => write!(f, "{e}"),
        }
    }
}

fn human(bytes: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// Read `resp`'s body, at most `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = resp.content_length();
    if let Some(len) = declared.filter(|len| *len > cap as u64) {
        return Err(BodyError::TooLarge {
            cap,
            declared: Some(len),
            read: 0,
        });
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |l| l as usize).min(cap));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge {
                cap,
                declared: None,
                read: body.len() + chunk.len(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_size_and_the_limit() {
        let e = BodyError::TooLarge {
            cap: 8 * 1024 * 1024,
            declared: Some(3_000_000_000),
            read: 0,
        };
        let m = e.to_string();
        assert!(
            m.contains("3000000000 bytes") && m.contains("8.0 MiB"),
            "{m}"
        );
        let e = BodyError::TooLarge {
            cap: 1024,
            declared: None,
            read: 2048,
        };
        assert!(e.to_string().contains("after 2048 bytes"), "{e}");
    }
}
