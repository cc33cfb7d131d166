//! Use rights derived from the catalog and purchases (R21, R22, R23). Pure reads of the
//! [`Catalog`] the books keep (the decision state's and the read models' alike): reports show
//! them, no command changes them.

use crate::books::Books;
use crate::catalog::Program;
use crate::ids::{LicenseId, ProductId};
use crate::state::{LicenseRecord, Product};

/// What the rights rules read: the product catalog, license IDs and purchases.
pub trait Catalog {
    /// The product of this id, if registered.
    fn product(&self, id: &ProductId) -> Option<&Product>;
    /// Every product, by id.
    fn products(&self) -> Box<dyn Iterator<Item = (&ProductId, &Product)> + '_>;
    /// The license ID of this id, if registered.
    fn license(&self, id: &LicenseId) -> Option<&LicenseRecord>;
    /// Licenses of `product` bought under `license_id` (R7, R24).
    fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64;
}

/// The one implementation: the books, whoever holds them.
impl<K: crate::books::KeyRecord> Catalog for crate::books::Books<K> {
    fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.get(id)
    }

    fn products(&self) -> Box<dyn Iterator<Item = (&ProductId, &Product)> + '_> {
        Box::new(self.products.iter())
    }

    fn license(&self, id: &LicenseId) -> Option<&LicenseRecord> {
        self.licenses.get(id)
    }

    fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        Books::purchased(self, license_id, product)
    }
}

/// R21: earlier versions of the same family and edition in the catalog, newest first.
pub fn downgrade_targets(state: &impl Catalog, product: &ProductId) -> Vec<ProductId> {
    let Some(this) = state.product(product) else {
        return Vec::new();
    };
    let Some(version) = this.version_number() else {
        return Vec::new();
    };
    let mut targets: Vec<(u32, &ProductId)> = state
        .products()
        .filter(|(_, p)| p.family == this.family && p.edition == this.edition)
        .filter_map(|(id, p)| p.version_number().map(|v| (v, id)))
        .filter(|(v, _)| *v < version)
        .collect();
    targets.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    targets.into_iter().map(|(_, id)| id.clone()).collect()
}

/// R22: whether OEM or retail copies of `product` may be reimaged with VL media.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Reimage {
    /// Whether reimaging is allowed (R22).
    pub eligible: bool,
    /// Why, or why not, in words.
    pub reason: &'static str,
}

/// R22: whether licenses of `product` under `license_id` may be reimaged, and why.
pub fn reimage(state: &impl Catalog, license_id: &LicenseId, product: &ProductId) -> Reimage {
    let Some(record) = state.license(license_id) else {
        return Reimage {
            eligible: false,
            reason: "unknown license ID",
        };
    };
    if record.program != Program::OpenLicense {
        return Reimage {
            eligible: true,
            reason: "every volume-licensing customer may reimage identical products",
        };
    }
    if state.purchased(license_id, product) > 0 {
        Reimage {
            eligible: true,
            reason: "open_license: at least one unit purchased under this license ID",
        }
    } else {
        Reimage {
            eligible: false,
            reason: "open_license: no unit of this product purchased under this license ID",
        }
    }
}

/// R23: limited training, backup and evaluation rights.
pub fn training_backup_evaluation(program: Program) -> bool {
    program.has_training_backup_evaluation_rights()
}
