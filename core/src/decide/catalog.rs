//! Licensor-side registrations: operators, orgs, license IDs, products, purchases, roles.
//! All of them need an operator (R3).

use super::common::{
    combined, count, license, optional_text, principal_name, product, require_operator, text,
};
use crate::catalog::Program;
use crate::command::{
    AddOperator, AssignRole, RecordPurchase, RegisterLicenseId, RegisterOrg, RegisterProduct,
    RevokeRole,
};
use crate::event::EventBody;
use crate::ids::Principal;
use crate::refusal::Refusal;
use crate::state::State;

/// R3: operators add operators; on an empty ledger the first `add_operator` is `init`.
pub(super) fn add_operator(
    state: &State,
    actor: &Principal,
    c: &AddOperator,
) -> Result<Vec<EventBody>, Refusal> {
    if state.has_operators() {
        require_operator(state, actor, "R3")?;
    } else if *actor != c.principal {
        return Err(Refusal::Invalid(
            "init: the first operator must add itself (actor == principal)".to_owned(),
        ));
    }
    principal_name(&c.principal)?;
    if state.is_operator(&c.principal) {
        return Err(Refusal::AlreadyExists(format!("operator {}", c.principal)));
    }
    Ok(vec![EventBody::OperatorAdded {
        principal: c.principal.clone(),
    }])
}

pub(super) fn register_org(
    state: &State,
    actor: &Principal,
    c: &RegisterOrg,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    text("name", &c.name)?;
    if state.org(&c.org).is_some() {
        return Err(Refusal::AlreadyExists(format!("org {}", c.org)));
    }
    if let Some(parent) = &c.parent {
        // Parents must exist first, so the parent chain can never form a cycle.
        super::common::org_exists(state, parent)?;
    }
    Ok(vec![EventBody::OrgRegistered {
        org: c.org.clone(),
        name: c.name.clone(),
        parent: c.parent.clone(),
    }])
}

/// R6: Open License IDs carry an authorization number and MPSA IDs a purchase account,
/// since those are the numbers their RDS license servers are activated with.
pub(super) fn register_license_id(
    state: &State,
    actor: &Principal,
    c: &RegisterLicenseId,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    if state.license(&c.license_id).is_some() {
        return Err(Refusal::AlreadyExists(format!(
            "license ID {}",
            c.license_id
        )));
    }
    super::common::org_exists(state, &c.org)?;
    text("agreement_number", &c.agreement_number)?;
    optional_text("authorization_number", &c.authorization_number)?;
    optional_text("purchase_account", &c.purchase_account)?;
    if c.program == Program::OpenLicense && c.authorization_number.is_none() {
        return Err(Refusal::Invalid(
            "authorization_number is required for an open_license license ID".to_owned(),
        ));
    }
    if c.program == Program::Mpsa && c.purchase_account.is_none() {
        return Err(Refusal::Invalid(
            "purchase_account is required for an mpsa license ID".to_owned(),
        ));
    }
    Ok(vec![EventBody::LicenseIdRegistered {
        license_id: c.license_id.clone(),
        org: c.org.clone(),
        program: c.program,
        agreement_number: c.agreement_number.clone(),
        authorization_number: c.authorization_number.clone(),
        purchase_account: c.purchase_account.clone(),
    }])
}

pub(super) fn register_product(
    state: &State,
    actor: &Principal,
    c: &RegisterProduct,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    if state.product(&c.product).is_some() {
        return Err(Refusal::AlreadyExists(format!("product {}", c.product)));
    }
    text("name", &c.name)?;
    text("version", &c.version)?;
    text("edition", &c.edition)?;
    Ok(vec![EventBody::ProductRegistered {
        product: c.product.clone(),
        name: c.name.clone(),
        family: c.family,
        version: c.version.clone(),
        edition: c.edition.clone(),
        key_requirement: c.key_requirement,
    }])
}

/// R7/R24: purchases are compliance facts, recorded apart from any key's activation limit.
pub(super) fn record_purchase(
    state: &State,
    actor: &Principal,
    c: &RecordPurchase,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    license(state, &c.license_id)?;
    product(state, &c.product)?;
    count("quantity", c.quantity)?;
    let bought = state.purchased(&c.license_id, &c.product);
    let what = || {
        format!(
            "purchases of {} under license ID {}",
            c.product, c.license_id
        )
    };
    combined(what, bought, c.quantity)?;
    Ok(vec![EventBody::PurchaseRecorded {
        license_id: c.license_id.clone(),
        product: c.product.clone(),
        quantity: c.quantity,
    }])
}

pub(super) fn assign_role(
    state: &State,
    actor: &Principal,
    c: &AssignRole,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    license(state, &c.license_id)?;
    principal_name(&c.principal)?;
    if state.has_role(&c.principal, &c.license_id, c.role) {
        return Err(Refusal::AlreadyExists(format!(
            "role {} of {} on license ID {}",
            c.role, c.principal, c.license_id
        )));
    }
    Ok(vec![EventBody::RoleAssigned {
        principal: c.principal.clone(),
        license_id: c.license_id.clone(),
        role: c.role,
    }])
}

pub(super) fn revoke_role(
    state: &State,
    actor: &Principal,
    c: &RevokeRole,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    license(state, &c.license_id)?;
    if !state.has_role(&c.principal, &c.license_id, c.role) {
        return Err(Refusal::Invalid(format!(
            "{} does not hold role {} on license ID {}",
            c.principal, c.role, c.license_id
        )));
    }
    Ok(vec![EventBody::RoleRevoked {
        principal: c.principal.clone(),
        license_id: c.license_id.clone(),
        role: c.role,
    }])
}
