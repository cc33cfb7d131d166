//! The OpenAPI schemas of the types whose JSON is a string written by hand (ids, times,
//! digests, key fragments): their `Serialize` is not derived, so neither is their schema.

/// Implements `utoipa::ToSchema` for `$name` as a JSON string (with `format` when given).
#[macro_export]
macro_rules! string_schema {
    ($name:ty, $description:expr) => {
        $crate::string_schema!($name, $description, None::<&str>);
    };
    ($name:ty, $description:expr, $format:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let format = $format
                    .map(|f: &str| utoipa::openapi::schema::SchemaFormat::Custom(f.to_owned()));
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(format)
                    .description(Some($description))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
