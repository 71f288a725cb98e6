//! Reading and writing the TOML policy file, with errors that name the line and the key.

use alloc::string::{String, ToString};

use super::Policy;
use super::PolicyError;

impl Policy {
    /// Reads a policy from the TOML format of DESIGN.md.
    ///
    /// Every section and key is optional and defaults to the product default.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Toml`] naming the line and the key for malformed TOML, an unknown key, a value
    /// of the wrong type, or a value that does not parse (address, CIDR, pool entry, mode, platform).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::Policy;
    ///
    /// let policy = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n")?;
    /// assert_eq!(policy.virtual_loopback.programs, ["crm.exe"]);
    ///
    /// let err = Policy::from_toml("[virtual_ip]\nadapter = \"192.0.2.0/33\"\n").unwrap_err();
    /// assert!(err.to_string().starts_with("policy line 2, key `virtual_ip.adapter`"), "{err}");
    /// # Ok::<(), ipvirt::PolicyError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start);
            let (line, key) = locate(text, start);
            PolicyError::Toml {
                line,
                key,
                message: e.message().trim_end().to_string(),
            }
        })
    }

    /// Writes the policy in the TOML format [`Policy::from_toml`] reads.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Serialize`] if a value cannot be represented in TOML (no field of `Policy` has
    /// such a value today; the error exists so that this never panics).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::Policy;
    ///
    /// let mut policy = Policy::default();
    /// policy.virtual_loopback.enabled = true;
    /// let text = policy.to_toml()?;
    /// assert_eq!(Policy::from_toml(&text)?, policy);
    /// # Ok::<(), ipvirt::PolicyError>(())
    /// ```
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string_pretty(self).map_err(|e| PolicyError::Serialize {
            message: e.to_string(),
        })
    }
}

/// The 1-based line of byte offset `at`, and the dotted key that line (or the assignment it belongs
/// to, for a multi-line array) sets, prefixed by the table it is in.
fn locate(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let lines: alloc::vec::Vec<&str> = text.lines().collect();
    let here = line.saturating_sub(1).min(lines.len().saturating_sub(1));

    let mut key = None;
    let mut table = None;
    for l in lines.get(..=here).unwrap_or_default().iter().rev() {
        let t = strip_comment(l).trim();
        if let Some(h) = t.strip_prefix('[') {
            let name = h.trim_start_matches('[').trim_end_matches(']').trim();
            if key.is_none() {
                // The error is on a table header itself (e.g. an unknown section).
                return (line, Some(name.to_string()));
            }
            table = Some(name.to_string());
            break;
        }
        if key.is_none()
            && let Some((k, _)) = t.split_once('=')
        {
            let k = k.trim().trim_matches('"');
            if !k.is_empty() {
                key = Some(k.to_string());
            }
        }
    }
    let key = match (table, key) {
        (Some(t), Some(k)) => Some(alloc::format!("{t}.{k}")),
        (None, k) => k,
        (Some(_), None) => None,
    };
    (line, key)
}

fn strip_comment(line: &str) -> &str {
    // Good enough for locating keys: a `#` outside a string starts a comment.
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' | '\'' => in_str = !in_str,
            '#' if !in_str => return line.get(..i).unwrap_or(line),
            _ => {}
        }
    }
    line
}
