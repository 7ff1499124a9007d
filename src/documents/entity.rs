//! Rows of the document tables. Only the documents module touches these.

pub mod document {
    use sea_orm::entity::prelude::*;

    /// A document and the facts of its latest version (copied, so lists need no join).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "document")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub case_id: Uuid,
        pub title: String,
        pub filename: String,
        pub content_type: String,
        pub size: i64,
        pub sha256: String,
        pub version: i32,
        pub confidentiality: String,
        pub uploaded_by: Uuid,
        pub legal_hold: bool,
        /// The first 64 KiB of text-like content, for full-text search.
        pub search_text: String,
        pub deleted_at: Option<DateTimeUtc>,
        pub deleted_by: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// What a document's view shows: a list reads these columns only, not the up to 64 KiB of
    /// `search_text` per row that no view shows.
    #[derive(Clone, Debug, DerivePartialModel)]
    #[sea_orm(entity = "Entity")]
    pub struct Shown {
        pub id: Uuid,
        pub case_id: Uuid,
        pub title: String,
        pub filename: String,
        pub content_type: String,
        pub size: i64,
        pub sha256: String,
        pub version: i32,
        pub confidentiality: String,
        pub uploaded_by: Uuid,
        pub legal_hold: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    impl From<Model> for Shown {
        fn from(d: Model) -> Self {
            Self {
                id: d.id,
                case_id: d.case_id,
                title: d.title,
                filename: d.filename,
                content_type: d.content_type,
                size: d.size,
                sha256: d.sha256,
                version: d.version,
                confidentiality: d.confidentiality,
                uploaded_by: d.uploaded_by,
                legal_hold: d.legal_hold,
                created_at: d.created_at,
                updated_at: d.updated_at,
            }
        }
    }
}

pub mod version {
    use sea_orm::entity::prelude::*;

    /// One stored version: where its ciphertext is and the wrapped key that opens it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "document_version")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub document_id: Uuid,
        pub version: i32,
        pub object_key: String,
        pub filename: String,
        pub content_type: String,
        pub size: i64,
        pub sha256: String,
        pub wrapped_key: Vec<u8>,
        pub nonce_prefix: Vec<u8>,
        pub uploaded_by: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upload {
    use sea_orm::entity::prelude::*;

    /// An object being written. Removed in the transaction that creates its version; what is
    /// left after a crash is swept (object deleted) by the background job.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "document_upload")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub object_key: String,
        pub started_at: DateTimeUtc,
        /// Set when a discard took the object for removal; the row goes once it is removed.
        pub claimed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod case_hold {
    use sea_orm::entity::prelude::*;

    /// A legal hold on every document of a case.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "document_case_hold")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: Uuid,
        pub set_by: Option<Uuid>,
        pub set_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Each member's documents in id order, kept by triggers (migration
/// `m20261209_000001_member_documents`): one row per document and member of its case. A
/// driver for staff's firm-wide lists; visibility is still decided on `document`.
pub mod member_document {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "member_document")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub document_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
