//! The closed vocabularies of volume licensing (docs/rules.md, "Key text").
//!
//! Each enum is written to the log by its variant index and to JSON by its snake_case name:
//! new variants go at the end, and none is ever removed or reordered.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of their variant index.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable snake_case name used in JSON, TSV and the CLI.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown {} {text:?}; expected one of {}", stringify!($name), names.join(", "))
                    })
            }
        }
    };
}

vocabulary!(
    /// A volume-licensing program.
    Program {
        /// Open License (retired in December 2021).
        OpenLicense = "open_license",
        /// Open Value.
        OpenValue = "open_value",
        /// Open Value Subscription.
        OpenValueSubscription = "open_value_subscription",
        /// Select.
        Select = "select",
        /// Select Plus.
        SelectPlus = "select_plus",
        /// Enterprise Agreement.
        EnterpriseAgreement = "enterprise_agreement",
        /// Microsoft Products and Services Agreement.
        Mpsa = "mpsa",
    }
);

vocabulary!(
    /// A product family; decides KMS thresholds (R14, R15) and downgrade lines (R21).
    Family {
        /// Windows for clients (KMS: the Windows line).
        WindowsClient = "windows_client",
        /// Windows Server (KMS: the Windows line).
        WindowsServer = "windows_server",
        /// Microsoft 365 Apps, Office, Project, Visio.
        Office = "office",
        /// SQL Server (keys embedded in its setup media, R5).
        SqlServer = "sql_server",
        /// Terminal Server / Remote Desktop Services CALs.
        Rds = "rds",
        /// Anything else.
        Other = "other",
    }
);

vocabulary!(
    /// What a product needs to be used (R4, R5, R6).
    KeyRequirement {
        /// A volume-license key the ledger issues.
        VlKey = "vl_key",
        /// No key at all (R4).
        None = "none",
        /// A key embedded in the setup media (R5).
        Embedded = "embedded",
        /// A license server, activated with the license ID's number, not a key (R6).
        LicenseServer = "license_server",
    }
);

vocabulary!(
    /// The kind of a product key.
    KeyKind {
        /// Multiple Activation Key (R8, R9).
        Mak = "mak",
        /// Extended Security Updates MAK, usable only inside its coverage (R12).
        EsuMak = "esu_mak",
        /// Activates KMS hosts (R13).
        KmsHost = "kms_host",
        /// KMS client setup key: no count, never consumed (R16).
        Setup = "setup",
        /// Online Services Activation key, counted in seats (R20).
        Osa = "osa",
        /// Ships inside the setup media (R5).
        Embedded = "embedded",
    }
);

vocabulary!(
    /// A volume-licensing role held by a principal on one license ID.
    Role {
        /// Manages the license ID and sees key text (R1).
        Administrator = "administrator",
        /// Sees key text (R1).
        ProductKeyReader = "product_key_reader",
        /// Manages keys and files requests; sees keys masked.
        KeyAdministrator = "key_administrator",
        /// Sees keys masked and their counts.
        KeyViewer = "key_viewer",
    }
);

vocabulary!(
    /// How a MAK activation reached the ledger (R9).
    ActivationMethod {
        /// Over the internet, one machine.
        Online = "online",
        /// By telephone, one machine.
        Phone = "phone",
        /// VAMT-style proxy activation of up to 10,000 machines.
        Proxy = "proxy",
    }
);

vocabulary!(
    /// What a KMS client runs; decides which count and threshold apply (R14, R15).
    ClientFamily {
        /// A Windows client (threshold 25, R14).
        WindowsClient = "windows_client",
        /// A Windows Server (threshold 5, R14).
        WindowsServer = "windows_server",
        /// Office (threshold 5, R14).
        Office = "office",
    }
);

vocabulary!(
    /// Why a KMS request is made (R18).
    KmsRequestReason {
        /// A KMS host key under Open Value, which normally has none.
        OpenValueException = "open_value_exception",
        /// More KMS host activations than the six a key allows.
        AdditionalHosts = "additional_hosts",
    }
);

vocabulary!(
    /// How key text left the ledger (R1, R2).
    DisclosureChannel {
        /// One key copied to the clipboard.
        Copy = "copy",
        /// A tab-separated key export file.
        Export = "export",
    }
);

vocabulary!(
    /// The outcome of an accepted activation (docs/api.md).
    ActivationStatus {
        /// The host's count reached the threshold: the client is activated.
        Activated = "activated",
        /// R9: the machine was already active on this key; nothing consumed.
        AlreadyActive = "already_active",
        /// R14: the contact is counted, the client is not yet activated.
        PendingThreshold = "pending_threshold",
    }
);

impl Family {
    /// The client family a KMS key of this product family serves, if any.
    pub const fn kms_line(self) -> Option<KmsLine> {
        match self {
            Family::WindowsClient | Family::WindowsServer => Some(KmsLine::Windows),
            Family::Office => Some(KmsLine::Office),
            _ => None,
        }
    }
}

impl ClientFamily {
    /// The KMS line a client of this family counts in (R14).
    pub const fn kms_line(self) -> KmsLine {
        match self {
            ClientFamily::WindowsClient | ClientFamily::WindowsServer => KmsLine::Windows,
            ClientFamily::Office => KmsLine::Office,
        }
    }

    /// R14: the count a host must reach before it activates a client of this family.
    pub const fn kms_threshold(self) -> u32 {
        match self {
            ClientFamily::WindowsClient => 25,
            ClientFamily::WindowsServer => 5,
            ClientFamily::Office => 5,
        }
    }
}

/// KMS keeps two separate counts per host: Windows (clients and servers) and Office (R14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KmsLine {
    /// Windows clients and servers.
    Windows,
    /// Office.
    Office,
}

impl Program {
    /// R6/R17: whether license IDs of this program carry an authorization number.
    pub const fn has_authorization_number(self) -> bool {
        matches!(self, Program::OpenLicense)
    }

    /// R23: limited training, backup and evaluation rights.
    pub const fn has_training_backup_evaluation_rights(self) -> bool {
        matches!(
            self,
            Program::Select | Program::SelectPlus | Program::EnterpriseAgreement
        )
    }
}

impl KeyKind {
    /// Kinds presented to `activate` (R9, R12).
    pub const fn is_mak(self) -> bool {
        matches!(self, KeyKind::Mak | KeyKind::EsuMak)
    }
}

impl Role {
    /// R1: roles that may see a key's text on their license ID.
    pub const fn may_see_key_text(self) -> bool {
        matches!(self, Role::Administrator | Role::ProductKeyReader)
    }
}
