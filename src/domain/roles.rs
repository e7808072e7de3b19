//! Roles, lowest to highest, and the scopes tokens carry.

use std::fmt;

/// A role a principal holds. Ordered: a higher role can do everything a lower one can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Manages the service users it administers and their keys.
    Admin,
    /// Everything in the organization.
    Owner,
    /// Platform level: creates organizations.
    Superuser,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Admin, Role::Owner, Role::Superuser];

    /// The role's name as stored and as it appears in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Superuser => "superuser",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles of `wanted` that `held` covers: a role held, or an organization role at or below
/// the highest organization role held (an owner may ask for a viewer-only token). `superuser`
/// is platform-level and covers only itself.
pub fn narrow(held: &[Role], wanted: &[Role]) -> Vec<Role> {
    let highest_org_role = held.iter().copied().filter(|r| *r != Role::Superuser).max();
    let mut covered: Vec<Role> = wanted
        .iter()
        .copied()
        .filter(|r| {
            held.contains(r) || (*r != Role::Superuser && highest_org_role.is_some_and(|h| h >= *r))
        })
        .collect();
    covered.sort();
    covered.dedup();
    covered
}

/// Renders roles as an OAuth scope string: space-separated, lowest first, no duplicates.
pub fn scope_string(roles: &[Role]) -> String {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a scope string; `Err` names the first unknown role.
pub fn parse_scope(scope: &str) -> Result<Vec<Role>, String> {
    let mut roles = scope
        .split_ascii_whitespace()
        .map(|s| Role::parse(s).ok_or_else(|| s.to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_lowest_to_highest() {
        assert!(
            Role::Viewer < Role::Admin
                && Role::Admin < Role::Owner
                && Role::Owner < Role::Superuser
        );
    }

    #[test]
    fn higher_organization_roles_cover_lower_ones_but_not_superuser() {
        assert_eq!(
            narrow(&[Role::Owner], &[Role::Viewer, Role::Admin]),
            vec![Role::Viewer, Role::Admin]
        );
        assert_eq!(narrow(&[Role::Viewer], &[Role::Admin]), vec![]);
        assert_eq!(narrow(&[Role::Owner], &[Role::Superuser]), vec![]);
        assert_eq!(narrow(&[Role::Superuser], &[Role::Viewer]), vec![]);
        assert_eq!(
            narrow(&[Role::Superuser], &[Role::Superuser]),
            vec![Role::Superuser]
        );
    }

    #[test]
    fn scope_strings_round_trip_sorted_and_deduplicated() {
        assert_eq!(
            parse_scope("owner viewer owner"),
            Ok(vec![Role::Viewer, Role::Owner])
        );
        assert_eq!(scope_string(&[Role::Owner, Role::Viewer]), "viewer owner");
        assert_eq!(parse_scope("owner root"), Err("root".to_owned()));
        assert_eq!(parse_scope(""), Ok(vec![]));
    }
}
