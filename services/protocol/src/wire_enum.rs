//! `wire_enum!`, the one declaration of a field-less enum whose variants are
//! wire names (error codes, leave reasons, relay kinds...).

/// Declares a field-less enum whose variants go on the wire as their names in
/// kebab-case. The case is stated here once, for serde and strum alike, so that
/// every derived name (`as_str`, `Display`, `FromStr`, the `VariantNames` and
/// `VariantArray` lists) is the one serde writes and reads; `tests/wire_names.rs`
/// checks each enum variant by variant.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            ::serde::Serialize,
            ::serde::Deserialize,
            ::strum::Display,
            ::strum::EnumString,
            ::strum::IntoStaticStr,
            ::strum::VariantArray,
            ::strum::VariantNames,
        )]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// The name as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}
