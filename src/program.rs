//! Executable-name normalisation and program-list matching (SPEC §4).
//!
//! Program lists name processes the way Windows administrators write them: `crm.exe`, or a full path
//! such as `C:\Apps\CRM\crm.exe`. The rules:
//!
//! - matching is case-insensitive (`CRM.EXE` = `crm.exe`), by Unicode lowercase;
//! - `\` and `/` are both path separators (`C:/Apps/crm.exe` = `C:\Apps\crm.exe`);
//! - an entry with a separator is a **full path** and matches exactly that path;
//! - an entry without one is a **bare name** and matches the last component of any path;
//! - no wildcards, no implied extension (`crm` does not match `crm.exe`), surrounding whitespace is
//!   ignored, and an empty entry matches nothing.
//!
//! Names are folded once, when the list is built ([`ProgramList::new`]); a lookup folds the image
//! path once and costs two hash probes whatever the list's length.

use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

/// Folds an executable name or path for comparison: trimmed, Unicode-lowercased, every `/` turned
/// into `\`.
///
/// # Examples
///
/// ```
/// assert_eq!(ipvirt::fold_program_name("  C:/Apps/CRM.EXE "), r"c:\apps\crm.exe");
/// ```
#[must_use]
pub fn fold_program_name(name: &str) -> String {
    name.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '/' { '\\' } else { c })
        .collect()
}

/// The last component of a folded path (the whole string when it has no separator).
fn basename(folded: &str) -> &str {
    folded.rsplit('\\').next().unwrap_or(folded)
}

/// A program list with its names folded once, for constant-time matching.
///
/// A match tells which entry matched (its index in the list as given), so explanations can quote the
/// administrator's own text. When two entries fold to the same name, the first one wins.
///
/// # Examples
///
/// ```
/// use ipvirt::ProgramList;
///
/// let list = ProgramList::new(["crm.exe", r"C:\Tools\cti.exe"]);
/// assert_eq!(list.find(r"D:\Other\CRM.EXE"), Some(0));        // bare name: any directory
/// assert_eq!(list.find("c:/tools/CTI.exe"), Some(1));          // full path: that path only
/// assert_eq!(list.find(r"D:\cti.exe"), None);
/// assert_eq!(list.find("crm"), None);                          // no implied extension
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProgramList {
    names: HashMap<String, u32>,
    paths: HashMap<String, u32>,
    len: usize,
}

impl ProgramList {
    /// Builds the list, folding every entry once.
    #[must_use]
    pub fn new<I, S>(entries: I) -> ProgramList
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = ProgramList::default();
        for (i, entry) in entries.into_iter().enumerate() {
            list.len = i + 1;
            let folded = fold_program_name(entry.as_ref());
            if folded.is_empty() {
                continue;
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let map = if folded.contains('\\') {
                &mut list.paths
            } else {
                &mut list.names
            };
            map.entry(folded).or_insert(index);
        }
        list
    }

    /// The index of the entry that matches `image` (a path or a bare executable name), if any.
    /// A full-path entry is preferred over a bare-name entry when both match.
    #[must_use]
    pub fn find(&self, image: &str) -> Option<u32> {
        if self.names.is_empty() && self.paths.is_empty() {
            return None;
        }
        let folded = fold_program_name(image);
        self.find_folded(&folded)
    }

    /// [`find`](Self::find) for an image already folded with [`fold_program_name`].
    #[must_use]
    pub fn find_folded(&self, folded: &str) -> Option<u32> {
        self.paths
            .get(folded)
            .or_else(|| self.names.get(basename(folded)))
            .copied()
    }

    /// Whether `image` matches an entry.
    ///
    /// ```
    /// use ipvirt::ProgramList;
    ///
    /// assert!(ProgramList::new(["crm.exe"]).contains("/opt/crm/CRM.exe"));
    /// ```
    #[must_use]
    pub fn contains(&self, image: &str) -> bool {
        self.find(image).is_some()
    }

    /// The number of entries the list was built from (empty and duplicate entries included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list was built from no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Entries of `list` that fold to the same name as an earlier entry: `(earlier index, later index)`.
pub(crate) fn duplicates<S: AsRef<str>>(list: &[S]) -> Vec<(usize, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let f = fold_program_name(e.as_ref());
        if f.is_empty() {
            continue;
        }
        match seen.get(&f) {
            Some(&first) => out.push((first, i)),
            None => {
                seen.insert(f, i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_4_rows() {
        let list = ProgramList::new(["crm.exe", r"C:\Apps\cti.exe", "  ", "Lic.EXE"]);
        assert_eq!(list.find("CRM.EXE"), Some(0));
        assert_eq!(list.find("crm.exe"), Some(0));
        assert_eq!(list.find(r"C:\Program Files\CRM\crm.exe"), Some(0));
        assert_eq!(list.find("/usr/local/bin/crm.exe"), Some(0));
        assert_eq!(list.find(r"C:\Apps\cti.exe"), Some(1));
        assert_eq!(list.find("c:/apps/CTI.EXE"), Some(1));
        assert_eq!(list.find(r"C:\Other\cti.exe"), None);
        assert_eq!(list.find("cti.exe"), None);
        assert_eq!(list.find("lic.exe"), Some(3));
        assert_eq!(list.find("crm*"), None);
        assert_eq!(list.find(""), None);
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn duplicates_fold() {
        assert_eq!(
            duplicates(&["a.exe", "B.exe", "A.EXE", "b.exe"]),
            [(0, 2), (1, 3)]
        );
    }
}
