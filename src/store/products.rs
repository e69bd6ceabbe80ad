//! The product catalog: upsert by SKU, and every product for the recommendations.

use super::QueryBuilder;
use super::{Db, Result, Store};
use sqlx::FromRow;

/// One product as imported (prices in minor units).
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price: Option<i64>,
    pub url: Option<String>,
    pub image_url: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    pub in_stock: bool,
    #[sqlx(try_from = "super::Flag")]
    pub active: bool,
    pub brand: Option<String>,
    pub size: Option<String>,
    /// The SKU this one is the bigger or better version of.
    pub upgrade_of: Option<String>,
}

const COLUMNS: &str =
    "sku, name, category, price, url, image_url, in_stock, active, brand, size, upgrade_of";

impl Store {
    /// Inserts or replaces products by SKU; returns (inserted, updated), a product stored
    /// exactly as given counting as neither.
    pub async fn upsert_products(&self, products: &[Product], now: i64) -> Result<(u64, u64)> {
        let mut tx = self.write_tx().await?;
        let (mut inserted, mut updated) = (0, 0);
        for chunk in products.chunks(super::BATCH) {
            let skus: Vec<String> = chunk.iter().map(|p| p.sku.clone()).collect();
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                format!("SELECT {COLUMNS} FROM products WHERE sku IN "),
            );
            super::push_in_list(&mut qb, &skus);
            let stored: Vec<Product> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let changed: Vec<&Product> = chunk.iter().filter(|p| !stored.contains(p)).collect();
            if changed.is_empty() {
                continue;
            }
            let known = changed
                .iter()
                .filter(|p| stored.iter().any(|s| s.sku == p.sku))
                .count() as u64;
            updated += known;
            inserted += changed.len() as u64 - known;
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                format!("INSERT INTO products ({COLUMNS}, updated_at) "),
            );
            qb.push_values(changed, |mut b, p| {
                b.push_bind(&p.sku)
                    .push_bind(&p.name)
                    .push_bind(&p.category)
                    .push_bind(p.price)
                    .push_bind(&p.url)
                    .push_bind(&p.image_url)
                    .push_bind(i64::from(p.in_stock))
                    .push_bind(i64::from(p.active))
                    .push_bind(&p.brand)
                    .push_bind(&p.size)
                    .push_bind(&p.upgrade_of)
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT (sku) DO UPDATE SET name = excluded.name, category = excluded.category, \
                 price = excluded.price, url = excluded.url, image_url = excluded.image_url, \
                 in_stock = excluded.in_stock, active = excluded.active, brand = excluded.brand, \
                 size = excluded.size, upgrade_of = excluded.upgrade_of, updated_at = excluded.updated_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((inserted, updated))
    }

    /// Every product of the catalog, by SKU.
    pub async fn products(&self) -> Result<Vec<Product>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM products ORDER BY sku"))
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
