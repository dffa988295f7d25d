//! `--node-types`: which node types a worker may run. Glob patterns allow;
//! patterns starting with `!` deny and win (`std.*,!std.shell`).

use globset::{Glob, GlobSet, GlobSetBuilder};

#[derive(Debug)]
pub struct AllowList {
    allow: Option<GlobSet>,
    deny: GlobSet,
}

impl AllowList {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let (mut allow, mut deny) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let mut any_allow = false;
        for pattern in patterns {
            match pattern.strip_prefix('!') {
                Some(denied) => deny.add(Glob::new(denied).map_err(|e| e.to_string())?),
                None => {
                    any_allow = true;
                    allow.add(Glob::new(pattern).map_err(|e| e.to_string())?)
                }
            };
        }
        Ok(Self {
            allow: if any_allow { Some(allow.build().map_err(|e| e.to_string())?) } else { None },
            deny: deny.build().map_err(|e| e.to_string())?,
        })
    }

    pub fn allows(&self, node_type: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.is_match(node_type)) && !self.deny.is_match(node_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn denials_win_over_allowances_and_an_empty_list_allows_all() {
        let l = list(&["std.*", "!std.shell"]);
        assert!(l.allows("std.noop"));
        assert!(!l.allows("std.shell"));
        assert!(!l.allows("mylib.x"));
        assert!(list(&[]).allows("anything"));
        let only_deny = list(&["!std.shell"]);
        assert!(only_deny.allows("mylib.x") && !only_deny.allows("std.shell"));
        assert!(AllowList::new(&["[".to_owned()]).is_err());
    }
}
