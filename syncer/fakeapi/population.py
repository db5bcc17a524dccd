"""The seeded cast of a data set: users, repositories, branches, messages, files, models."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

# fmt: off
FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "taro", "hanako", "yuki", "haruto", "sakura", "kenji", "aiko", "ren", "mei",
)
LAST_NAMES = (
    "smith", "jones", "garcia", "miller", "davis", "martin", "lee", "walker", "young",
    "yamada", "suzuki", "tanaka", "watanabe", "ito", "nakamura", "kobayashi", "sato",
)
REPOS = (
    "company/web-app", "company/api-gateway", "company/analytics", "company/mobile-ios",
    "company/mobile-android", "company/infra", "company/docs", "company/ml-pipeline",
    "company/billing", "company/design-system", "company/data-warehouse", "company/cli",
)
DEFAULT_BRANCHES = ("main", "main", "master")
FEATURE_BRANCHES = (
    "feature/login-flow", "feature/csv-export", "fix/rate-limit", "fix/null-branch",
    "hotfix/2025-07-30", "renovate/aiohttp-3.x", "chore/bump-deps", "refactor/analytics-client",
    "yuki/実験-ブランチ", "spike/streaming, csv", "release/v2.4", "dev",
)
SUBJECTS = (
    "Refactor: extract analytics client", "Add error handling", "Fix off-by-one in pagination",
    "Bump dependencies", "Update README", "Add retry with jitter", "Remove dead code",
    "Speed up CSV export", "Handle null branch names", "Initial commit", "WIP",
    "Tidy imports, rename helpers", 'Revert "Add retry with jitter"',
    'Say "hello" to the new parser', "Merge branch 'main' into feature/login-flow",
    "レート制限を修正: エンドポイントごと・チームごとに、1分あたり5リクエスト",
    "チームのリポジトリに対するAI生成コードの分析にアクセスできる。",
    "フィードバックに基づき機能を拡張中—必要なエンドポイントを教えて!",
    "クライアントで有効な場合、fileName など一部のメタデータは省略されることがある",
    "✨ polish the dashboard", "fix: handle 429 (Retry-After)", "docs: 使い方を追加",
)
BODIES = (
    "Closes #123",
    "Co-authored-by: Cursor Agent <agent@cursor.com>",
    "Rationale: the old loop, which paged by offset, skipped rows.\nSee \"notes.md\".",
    "isPrimaryBranch は、現在のブランチがデフォルトブランチと一致する場合に true。",
)
DIRECTORIES = (
    "src/analytics", "src/utils", "src/api", "src/components", "src/hooks", "tests",
    "server/handlers", "server/db", "scripts", "docs", "pkg/sync", "app/models",
)
STEMS = (
    "report", "ui", "helpers", "client", "index", "main", "config", "schema", "router",
    "useAuth", "types", "constants", "store", "worker", "parser", "test_parser", "README",
    "Button", "migrations_0003", "handler", "レポート", "my file, v2", 'quote"d',
)
EXTENSIONS = ("ts", "tsx", "py", "go", "rs", "js", "md", "sql", "java", "kt", "swift", "css")
COMPOSER_MODELS = (
    "claude-4-sonnet", "claude-4.5-sonnet-thinking", "gpt-5", "gpt-4o", "o3",
    "gemini-2.5-pro", "default", "claude-4-opus", None,
)
TAB_MODELS = (None, None, None, None, None, None, "fusion", None)
OTHER_SOURCES = ("CLI", "BACKGROUND_AGENT")
# fmt: on


@dataclass(frozen=True, slots=True)
class User:
    """One team member as the API identifies them."""

    numeric_id: int
    encoded_id: str
    email: str
    private: bool


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository with its default branch and some feature branches."""

    name: str
    default_branch: str
    feature_branches: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file a change can touch."""

    name: str
    extension: str


class Population:
    """Everything rows are drawn from, built once from the seed."""

    def __init__(self, seed: int, privacy_fraction: float, users: int = 36) -> None:
        rng = random.Random(f"fakeapi-population-{seed}")
        self.users = _make_users(rng, users, privacy_fraction)
        self.user_pick = _weighted_table(rng, len(self.users), 256)
        self.repos = [
            Repo(name, rng.choice(DEFAULT_BRANCHES), tuple(rng.sample(FEATURE_BRANCHES, 5)))
            for name in rng.sample(REPOS, len(REPOS))
        ]
        self.repo_pick = _weighted_table(rng, len(self.repos), 64)
        self.messages = _make_messages(rng, 1024)
        self.files = _make_files(rng, 512)


def _make_users(rng: random.Random, count: int, privacy_fraction: float) -> list[User]:
    users: list[User] = []
    numeric_ids = rng.sample(range(1, 100_000), count)
    emails: set[str] = set()
    alphabet = string.ascii_lowercase + string.digits
    for numeric_id in numeric_ids:
        email = ""
        while not email or email in emails:
            domain = rng.choice(("company.com", "company.com", "company.co.jp"))
            email = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{domain}"
        emails.add(email)
        token = "".join(rng.choice(alphabet) for _ in range(21))  # 26 characters in all
        users.append(User(numeric_id, f"user_{token}", email, rng.random() < privacy_fraction))
    return users


def _weighted_table(rng: random.Random, count: int, size: int) -> list[int]:
    """A look-up table of indices with a Zipf-like skew: a few are very busy."""
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(count)]
    return rng.choices(range(count), weights=weights, k=size)


def _make_messages(rng: random.Random, count: int) -> list[str | None]:
    messages: list[str | None] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            messages.append(None)
            continue
        subject = rng.choice(SUBJECTS)
        if roll < 0.25:
            subject = f"{subject}\n\n{rng.choice(BODIES)}"
        elif roll < 0.35:
            subject = f"{subject} (#{rng.randint(100, 9999)})"
        messages.append(subject)
    return messages


def _make_files(rng: random.Random, count: int) -> list[SourceFile]:
    files: list[SourceFile] = []
    for _ in range(count):
        extension = rng.choice(EXTENSIONS)
        name = f"{rng.choice(DIRECTORIES)}/{rng.choice(STEMS)}.{extension}"
        files.append(SourceFile(name, extension))
    return files
