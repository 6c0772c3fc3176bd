-- Demo shop for the Ferry quick start (examples/quickstart).
--
-- Build the SQLite database from the repository root:
--   sqlite3 examples/quickstart/shop.db < examples/quickstart/shop.sql
-- (the file can be re-run: it drops and recreates its tables).
--
-- The data is fixed: orders from Friday 2025-06-06 to Sunday 2025-06-15 (Asia/Tokyo). The
-- export slot 2025-06-16 00:30 JST with window previousDay covers 2025-06-15 00:00 to
-- 2025-06-16 00:00 +09:00. Timestamps are ISO-8601 text with an offset; most are +09:00, and a
-- few written by an overseas system are +00:00, which is why the queries compare julianday()
-- values rather than raw text.

PRAGMA foreign_keys = ON;

DROP TABLE IF EXISTS order_items;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS products;
DROP TABLE IF EXISTS customers;

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL UNIQUE,
    prefecture  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    price       INTEGER NOT NULL,            -- yen, tax included
    updated_at  TEXT NOT NULL
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL UNIQUE,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status      TEXT NOT NULL CHECK (status IN ('ordered', 'shipped', 'delivered', 'cancelled')),
    ordered_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE order_items (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL REFERENCES orders(id),
    product_id   INTEGER NOT NULL REFERENCES products(id),
    product_name TEXT NOT NULL,               -- name at the time of the order
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    unit_price   INTEGER NOT NULL,            -- yen, tax included
    updated_at   TEXT NOT NULL
);

CREATE INDEX order_items_updated_at ON order_items (updated_at);

INSERT INTO customers (id, name, email, prefecture, created_at, updated_at) VALUES
    (1, '山田 太郎', 'taro.yamada@example.jp', '東京都', '2024-11-02T10:15:00+09:00', '2024-11-02T10:15:00+09:00'),
    (2, '佐藤 花子', 'hanako.sato@example.jp', '大阪府', '2025-01-20T21:40:12+09:00', '2025-01-20T21:40:12+09:00'),
    (3, '鈴木 一郎', 'ichiro.suzuki@example.jp', '愛知県', '2025-02-14T08:05:33+09:00', '2025-02-14T08:05:33+09:00'),
    (4, '高橋 美咲', 'misaki.takahashi@example.jp', '福岡県', '2025-03-03T19:22:41+09:00', '2025-03-03T19:22:41+09:00'),
    (5, '田中 健', 'ken.tanaka@example.jp', '北海道', '2025-04-11T12:00:09+09:00', '2025-04-11T12:00:09+09:00'),
    (6, '伊藤 さくら', 'sakura.ito@example.jp', '京都府', '2025-05-05T16:48:27+09:00', '2025-05-05T16:48:27+09:00'),
    (7, 'Emily Carter', 'emily.carter@example.com', 'カリフォルニア州', '2025-05-28T03:10:00+09:00', '2025-05-28T03:10:00+09:00'),
    (8, '渡辺 翔', 'sho.watanabe@example.jp', '神奈川県', '2025-06-08T22:31:55+09:00', '2025-06-08T22:31:55+09:00');

INSERT INTO products (id, code, name, price, updated_at) VALUES
    (1, 'TEA-001', '静岡煎茶 100g', 1280, '2025-05-01T09:00:00+09:00'),
    (2, 'TEA-002', '宇治抹茶 30g', 2160, '2025-05-01T09:00:00+09:00'),
    (3, 'TEA-003', 'ほうじ茶ティーバッグ 20包', 980, '2025-05-01T09:00:00+09:00'),
    (4, 'SWT-001', 'どら焼き 5個入', 1500, '2025-05-01T09:00:00+09:00'),
    (5, 'SWT-002', '抹茶ロールケーキ', 2400, '2025-05-01T09:00:00+09:00'),
    (6, 'CUP-001', '有田焼 湯呑み', 3300, '2025-05-01T09:00:00+09:00'),
    (7, 'CUP-002', '常滑焼 急須', 5500, '2025-05-01T09:00:00+09:00'),
    (8, 'GFT-001', 'ギフトセット「四季」', 6800, '2025-05-01T09:00:00+09:00');

-- Orders. A-20250610-002 and A-20250614-002 come from an overseas storefront that writes UTC
-- (+00:00): 2025-06-14T15:30:00+00:00 is 2025-06-15 00:30 in Tokyo.
INSERT INTO orders (id, number, customer_id, status, ordered_at, updated_at) VALUES
    (1, 'A-20250606-001', 1, 'delivered', '2025-06-06T09:12:04+09:00', '2025-06-09T14:00:00+09:00'),
    (2, 'A-20250607-001', 2, 'delivered', '2025-06-07T13:45:10+09:00', '2025-06-10T11:20:00+09:00'),
    (3, 'A-20250608-001', 3, 'delivered', '2025-06-08T20:02:33+09:00', '2025-06-11T10:05:00+09:00'),
    (4, 'A-20250609-001', 4, 'delivered', '2025-06-09T07:30:00+09:00', '2025-06-12T16:40:00+09:00'),
    (5, 'A-20250609-002', 5, 'delivered', '2025-06-09T12:18:51+09:00', '2025-06-12T16:41:00+09:00'),
    (6, 'A-20250610-001', 6, 'delivered', '2025-06-10T08:55:02+09:00', '2025-06-13T09:30:00+09:00'),
    (7, 'A-20250610-002', 7, 'shipped', '2025-06-10T02:14:09+00:00', '2025-06-12T01:00:00+00:00'),
    (8, 'A-20250611-001', 1, 'delivered', '2025-06-11T19:07:45+09:00', '2025-06-14T10:12:00+09:00'),
    (9, 'A-20250611-002', 6, 'delivered', '2025-06-11T21:33:18+09:00', '2025-06-14T10:15:00+09:00'),
    (10, 'A-20250612-001', 8, 'shipped', '2025-06-12T10:01:27+09:00', '2025-06-14T15:20:00+09:00'),
    (11, 'A-20250612-002', 2, 'cancelled', '2025-06-12T22:46:03+09:00', '2025-06-13T09:02:11+09:00'),
    (12, 'A-20250613-001', 3, 'shipped', '2025-06-13T11:11:11+09:00', '2025-06-14T18:00:00+09:00'),
    (13, 'A-20250613-002', 4, 'shipped', '2025-06-13T17:25:36+09:00', '2025-06-15T10:02:00+09:00'),
    (14, 'A-20250614-001', 5, 'ordered', '2025-06-14T23:59:59+09:00', '2025-06-14T23:59:59+09:00'),
    (15, 'A-20250614-002', 7, 'ordered', '2025-06-14T15:30:00+00:00', '2025-06-14T15:30:00+00:00'),
    (16, 'A-20250615-001', 6, 'ordered', '2025-06-15T00:00:00+09:00', '2025-06-15T00:00:00+09:00'),
    (17, 'A-20250615-002', 1, 'ordered', '2025-06-15T09:41:20+09:00', '2025-06-15T09:41:20+09:00'),
    (18, 'A-20250615-003', 8, 'ordered', '2025-06-15T14:03:58+09:00', '2025-06-15T14:03:58+09:00'),
    (19, 'A-20250615-004', 2, 'ordered', '2025-06-15T23:58:41+09:00', '2025-06-15T23:58:41+09:00'),
    (20, 'A-20250616-001', 3, 'ordered', '2025-06-16T00:10:05+09:00', '2025-06-16T00:10:05+09:00');

-- Order items. updated_at is when the item row last changed: usually when the order was
-- placed; the third item of A-20250613-002 had its quantity changed on 2025-06-15.
INSERT INTO order_items (id, order_id, product_id, product_name, quantity, unit_price, updated_at) VALUES
    (1, 1, 1, '静岡煎茶 100g', 2, 1280, '2025-06-06T09:12:04+09:00'),
    (2, 1, 4, 'どら焼き 5個入', 1, 1500, '2025-06-06T09:12:04+09:00'),
    (3, 2, 2, '宇治抹茶 30g', 1, 2160, '2025-06-07T13:45:10+09:00'),
    (4, 2, 6, '有田焼 湯呑み', 1, 3300, '2025-06-07T13:45:10+09:00'),
    (5, 3, 3, 'ほうじ茶ティーバッグ 20包', 3, 980, '2025-06-08T20:02:33+09:00'),
    (6, 4, 8, 'ギフトセット「四季」', 1, 6800, '2025-06-09T07:30:00+09:00'),
    (7, 5, 1, '静岡煎茶 100g', 1, 1280, '2025-06-09T12:18:51+09:00'),
    (8, 5, 2, '宇治抹茶 30g', 1, 2160, '2025-06-09T12:18:51+09:00'),
    (9, 5, 5, '抹茶ロールケーキ', 1, 2400, '2025-06-09T12:18:51+09:00'),
    (10, 6, 7, '常滑焼 急須', 1, 5500, '2025-06-10T08:55:02+09:00'),
    (11, 6, 1, '静岡煎茶 100g', 2, 1280, '2025-06-10T08:55:02+09:00'),
    (12, 7, 2, '宇治抹茶 30g', 2, 2160, '2025-06-10T02:14:09+00:00'),
    (13, 7, 6, '有田焼 湯呑み', 2, 3300, '2025-06-10T02:14:09+00:00'),
    (14, 8, 4, 'どら焼き 5個入', 2, 1500, '2025-06-11T19:07:45+09:00'),
    (15, 8, 5, '抹茶ロールケーキ', 1, 2400, '2025-06-11T19:07:45+09:00'),
    (16, 9, 6, '有田焼 湯呑み', 2, 3300, '2025-06-11T21:33:18+09:00'),
    (17, 9, 7, '常滑焼 急須', 1, 5500, '2025-06-11T21:33:18+09:00'),
    (18, 9, 2, '宇治抹茶 30g', 1, 2160, '2025-06-11T21:33:18+09:00'),
    (19, 10, 3, 'ほうじ茶ティーバッグ 20包', 2, 980, '2025-06-12T10:01:27+09:00'),
    (20, 10, 1, '静岡煎茶 100g', 1, 1280, '2025-06-12T10:01:27+09:00'),
    (21, 10, 2, '宇治抹茶 30g', 1, 2160, '2025-06-12T10:01:27+09:00'),
    (22, 11, 8, 'ギフトセット「四季」', 1, 6800, '2025-06-13T09:02:11+09:00'),
    (23, 12, 5, '抹茶ロールケーキ', 2, 2400, '2025-06-13T11:11:11+09:00'),
    (24, 13, 1, '静岡煎茶 100g', 3, 1280, '2025-06-13T17:25:36+09:00'),
    (25, 13, 3, 'ほうじ茶ティーバッグ 20包', 1, 980, '2025-06-15T10:02:00+09:00'),
    (26, 13, 4, 'どら焼き 5個入', 1, 1500, '2025-06-13T17:25:36+09:00'),
    (27, 13, 6, '有田焼 湯呑み', 1, 3300, '2025-06-13T17:25:36+09:00'),
    (28, 14, 7, '常滑焼 急須', 1, 5500, '2025-06-14T23:59:59+09:00'),
    (29, 15, 2, '宇治抹茶 30g', 1, 2160, '2025-06-14T15:30:00+00:00'),
    (30, 15, 1, '静岡煎茶 100g', 2, 1280, '2025-06-14T15:30:00+00:00'),
    (31, 16, 8, 'ギフトセット「四季」', 2, 6800, '2025-06-15T00:00:00+09:00'),
    (32, 16, 4, 'どら焼き 5個入', 1, 1500, '2025-06-15T00:00:00+09:00'),
    (33, 17, 5, '抹茶ロールケーキ', 1, 2400, '2025-06-15T09:41:20+09:00'),
    (34, 17, 3, 'ほうじ茶ティーバッグ 20包', 2, 980, '2025-06-15T09:41:20+09:00'),
    (35, 18, 1, '静岡煎茶 100g', 1, 1280, '2025-06-15T14:03:58+09:00'),
    (36, 18, 2, '宇治抹茶 30g', 1, 2160, '2025-06-15T14:03:58+09:00'),
    (37, 18, 6, '有田焼 湯呑み', 1, 3300, '2025-06-15T14:03:58+09:00'),
    (38, 19, 4, 'どら焼き 5個入', 3, 1500, '2025-06-15T23:58:41+09:00'),
    (39, 20, 3, 'ほうじ茶ティーバッグ 20包', 1, 980, '2025-06-16T00:10:05+09:00'),
    (40, 20, 1, '静岡煎茶 100g', 1, 1280, '2025-06-16T00:10:05+09:00');
