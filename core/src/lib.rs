//! keyledger's domain: identifiers, commands, events and the pure licensing rules.
//!
//! The one design decision: every rule lives in two synchronous functions,
//! [`decide`](fn@decide)`(&State, &Command, &Context) -> Result<Vec<Event>, Refusal>` and
//! [`State::apply`]`(&mut self, &Event)`. They read no clock, draw no random numbers and do
//! no I/O: business time arrives inside the command and whatever the caller computes
//! (key fingerprints, generated key material) arrives in [`Context`]. So replaying the log
//! gives the same state on any machine, in any year, which is what an auditor relies on.
//!
//! Rule ids (R1..R24) refer to docs/rules.md; the code and the tests cite them.
#![forbid(unsafe_code)]
// Every public item says what it is: rustdoc is how a newcomer reads the domain.
#![warn(missing_docs)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

pub mod books;
pub mod catalog;
pub mod command;
pub mod decide;
pub mod event;
pub mod facts;
pub mod ids;
pub mod maps;
pub mod planted;
pub mod product_key;
pub mod refusal;
pub mod rights;
pub mod schema;
pub mod state;
pub mod time;

pub use catalog::{
    ActivationMethod, ActivationStatus, ClientFamily, DisclosureChannel, Family, KeyKind,
    KeyRequirement, KmsLine, KmsRequestReason, Program, Role,
};
pub use command::{Command, CommandBody};
pub use decide::{decide, handle, Context, NewKeyMaterial, Outcome};
pub use event::{Event, EventBody, EventKind, Named, Stream};
pub use ids::{
    ClientId, CommandId, HostId, IdError, KeyId, LicenseId, MachineId, OrderId, OrgId, Principal,
    ProductId, RequestId, TenantId,
};
pub use product_key::{Digest, Fingerprint, KeyTextError, Last5, ProductKeyText};
pub use refusal::{Refusal, RefusalCode};
pub use state::State;
pub use time::{Span, Timestamp};
