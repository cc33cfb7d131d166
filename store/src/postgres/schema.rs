//! The PostgreSQL schema (`schema.sql`) and the upgrades from each older one, applied in
//! order; the `MARK_*` statements record a format reached by building derived rows.

pub(super) const SCHEMA: &str = include_str!("schema.sql");
pub(super) const UPGRADE_2: &str = include_str!("upgrade-2.sql");
pub(super) const MARK_2: &str =
    "UPDATE keyledger.meta SET value = '\\x02' WHERE key = 'format_version';";
pub(super) const UPGRADE_3: &str = include_str!("upgrade-3.sql");
/// Schema 4 adds no table: the machine buckets also hold the history rows
/// (`EventBody::named`), built for the blocks up to the watermark before this mark.
pub(super) const UPGRADE_5: &str = include_str!("upgrade-5.sql");
pub(super) const MARK_5: &str =
    "UPDATE keyledger.meta SET value = '\\x05' WHERE key = 'format_version';";
