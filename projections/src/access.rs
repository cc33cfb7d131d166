//! Who may read what (R1, R3): the one read-authorization rule of reports, key exports, the
//! log and the proofs that carry its records. Operators read everything; anyone else reads
//! the license IDs they hold a role on, and the events in those license IDs' history.

use keyledger_core::{EventBody, LicenseId, Principal};

use crate::model::Projections;

/// Why a principal may not read what it asked for: the rule (`R1`, `R3`) and the words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRefusal {
    /// The rule that refuses: `R1` (no role on the license ID) or `R3` (not an operator).
    pub rule: &'static str,
    /// Why, in the words every surface shows as they are.
    pub message: String,
}

impl Projections {
    /// Whether `principal` is an operator: one who reads everything (R3).
    pub fn is_operator(&self, principal: &Principal) -> bool {
        self.books.is_operator(principal)
    }

    /// Whether `principal` may read `license_id`'s report, keys (masked without the role
    /// R1 asks for) and history.
    pub fn may_read(&self, principal: &Principal, license_id: &LicenseId) -> bool {
        self.is_operator(principal)
            || self
                .books
                .roles
                .get(&(license_id.clone(), principal.clone()))
                .is_some_and(|roles| !roles.is_empty())
    }

    /// [`Projections::may_read`] with the refusal every surface shows when not: the rule
    /// (`R1`) and the words.
    pub fn may_read_license(
        &self,
        principal: &Principal,
        license_id: &LicenseId,
    ) -> Result<(), ReadRefusal> {
        if self.may_read(principal, license_id) {
            return Ok(());
        }
        Err(ReadRefusal {
            rule: "R1",
            message: format!("{principal} holds no role on license ID {license_id}"),
        })
    }

    /// Whether `principal` may read the log narrowed to `license_id` (`None`: the whole log,
    /// the operators' alone). The one rule of every log surface: `/v1/log`, the event
    /// stream, consumers' pages and the console's audit log. `Err` says which rule refused
    /// and why, in words every surface shows as they are.
    pub fn may_read_log(
        &self,
        principal: &Principal,
        license_id: Option<&LicenseId>,
    ) -> Result<(), ReadRefusal> {
        match license_id {
            Some(license_id) => self.may_read_license(principal, license_id),
            None if self.is_operator(principal) => Ok(()),
            None => Err(ReadRefusal {
                rule: "R3",
                message: format!(
                    "{principal} is not an operator: filter by a license ID you hold a role on"
                ),
            }),
        }
    }

    /// Whether `principal` may read the event at `seq` (the log page or the inclusion proof
    /// that carries it): operators any; others one in the history of a license ID they may
    /// read ([`Projections::subjects`]). Events about no license ID (operators, orgs,
    /// products) are the operators' alone.
    pub fn may_read_event(&self, principal: &Principal, seq: u64, body: &EventBody) -> bool {
        self.is_operator(principal)
            || self
                .subjects(seq, body)
                .licenses
                .iter()
                .any(|license_id| self.may_read(principal, license_id))
    }
}
