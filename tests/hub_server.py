"""A loopback stand-in for the Hugging Face Hub: the real `huggingface_hub` client talks to it in tests.

It speaks the part of the Hub's HTTP API that publishing and loading a model use, as huggingface_hub 2.4
and transformers 5.24 call it: `whoami-v2`, repo creation and info, branches, README validation,
preupload, commit (NDJSON) and file downloads (`/resolve/`). Preupload answers "regular" for every file,
so the client sends the contents inline in the commit (base64), with no LFS or Xet transfer.

Its rules follow the Hub's: no or unknown token, 401; creating a repo outside your namespaces, or with a
read-only token, 403; a repo that does not exist or that your account cannot see, 404 (`RepoNotFound`);
writing to a repo you can see but not write, 403.

    hub = FakeHub({"hf_alice": Account("alice", orgs=["acme"])})
    with hub:
        subprocess.run(command, env={**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_alice"})
    hub.commits[0].files  # {path in repo: bytes}
"""

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Account:
    name: str
    orgs: list[str] = field(default_factory=list)
    role: str = "write"  # the token's role: "write" or "read"

    @property
    def namespaces(self) -> list[str]:
        return [self.name, *self.orgs]


@dataclass
class Repo:
    private: bool = False
    # Who may see a private repo: None means every member of its namespace (a resource group narrows it).
    members: set[str] | None = None
    refs: dict[str, str] = field(default_factory=dict)  # branch or "refs/pr/N" -> commit id
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> files

    def files(self, revision: str) -> dict[str, bytes] | None:
        commit = self.refs.get(revision, revision)
        return self.snapshots.get(commit)


@dataclass
class Commit:
    repo_id: str
    revision: str  # the branch it was made on, or the branch a pull request targets
    create_pr: bool
    summary: str
    files: dict[str, bytes]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **fields):
        super().__init__(message)
        self.status, self.message, self.code, self.fields = status, message, code, fields


def commit_id(*parts: bytes) -> str:
    return hashlib.sha1(b"".join(parts)).hexdigest()


class FakeHub:
    def __init__(self, accounts: dict[str, Account], repos: dict[str, Repo] | None = None):
        self.accounts = accounts  # token -> account
        self.repos = repos or {}
        self.commits: list[Commit] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.lock = threading.Lock()

    def __enter__(self) -> "FakeHub":
        # a short poll interval: `shutdown` waits for the serving loop's next poll
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- who asks, and what they may do --------------------------------------------------------------

    def account(self, authorization: str | None) -> Account:
        token = (authorization or "").removeprefix("Bearer ").strip()
        if token not in self.accounts:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.accounts[token]

    def visible_repo(self, repo_id: str, authorization: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is not None and repo.private:
            account = self.accounts.get((authorization or "").removeprefix("Bearer ").strip())
            namespace = repo_id.split("/")[0]
            allowed = account is not None and (
                account.name in repo.members if repo.members is not None else namespace in account.namespaces
            )
            repo = repo if allowed else None
        if repo is None:
            raise HubError(404, "Repository not found", code="RepoNotFound")
        return repo

    def writable_repo(self, repo_id: str, authorization: str | None) -> Repo:
        account = self.account(authorization)
        repo = self.visible_repo(repo_id, authorization)
        if repo_id.split("/")[0] not in account.namespaces or account.role != "write":
            raise HubError(403, f"You don't have write access to {repo_id}")
        return repo

    # --- the API -------------------------------------------------------------------------------------

    def whoami(self, request) -> dict:
        account = self.account(request.authorization)
        return {
            "type": "user",
            "name": account.name,
            "orgs": [{"type": "org", "name": org} for org in account.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": account.role}},
        }

    def create_repo(self, request) -> dict:
        account = self.account(request.authorization)
        body = request.json()
        namespace = body.get("organization") or account.name
        repo_id = f"{namespace}/{body['name']}"
        if namespace not in account.namespaces or account.role != "write":
            raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        if repo_id in self.repos:
            # the client reads the repo's url from this answer when it passes exist_ok=True
            raise HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
        empty = commit_id(repo_id.encode())
        private = body.get("visibility") == "private"
        self.repos[repo_id] = Repo(private=private, refs={"main": empty}, snapshots={empty: {}})
        return {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def repo_info(self, request, repo_id: str, revision: str = "main") -> dict:
        repo = self.visible_repo(repo_id, request.authorization)
        files = repo.files(revision)
        if files is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return {
            "id": repo_id, "private": repo.private, "sha": repo.refs.get(revision, revision),
            "siblings": [{"rfilename": path} for path in sorted(files)],
        }

    def create_branch(self, request, repo_id: str, branch: str) -> dict:
        repo = self.writable_repo(repo_id, request.authorization)
        if branch in repo.refs:
            raise HubError(409, f"Branch {branch} already exists")
        repo.refs[branch] = repo.refs["main"]
        return {}

    def preupload(self, request, repo_id: str, revision: str) -> dict:
        self.writable_repo(repo_id, request.authorization)
        files = request.json()["files"]
        return {"files": [{"path": file["path"], "uploadMode": "regular", "shouldIgnore": False} for file in files]}

    def commit(self, request, repo_id: str, revision: str) -> dict:
        repo = self.writable_repo(repo_id, request.authorization)
        if revision not in repo.refs:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added = {
            line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"
        }
        create_pr = request.query.get("create_pr") == ["1"]
        files = {**repo.files(revision), **added}
        changes = (path.encode() + content for path, content in sorted(added.items()))
        oid = commit_id(repo.refs[revision].encode(), *changes)
        repo.snapshots[oid] = files
        pr_url = None
        if create_pr:
            number = sum(ref.startswith("refs/pr/") for ref in repo.refs) + 1
            repo.refs[f"refs/pr/{number}"] = oid
            pr_url = f"{self.url}/{repo_id}/discussions/{number}"
        else:
            repo.refs[revision] = oid
        self.commits.append(Commit(repo_id, revision, create_pr, header["summary"], added))
        return {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url}

    def resolve(self, request, repo_id: str, revision: str, path: str) -> tuple[dict, bytes]:
        repo = self.visible_repo(repo_id, request.authorization)
        files = repo.files(revision)
        if files is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        if path not in files:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
        content = files[path]
        headers = {"X-Repo-Commit": repo.refs.get(revision, revision), "ETag": f'"{commit_id(content)}"'}
        return headers, content


REPO = r"(?P<repo_id>[^/]+/[^/]+)"
ROUTES = [  # (method, path pattern, FakeHub method); revisions arrive URL-quoted ("refs%2Fpr%2F1")
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", None),
    ("GET", rf"/api/models/{REPO}", "repo_info"),
    ("GET", rf"/api/models/{REPO}/revision/(?P<revision>[^/]+)", "repo_info"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", "create_branch"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<revision>[^/]+)", "commit"),
    ("GET", rf"/{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", "resolve"),
]


def make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer has a Content-Length

        def log_message(self, *args) -> None:  # the test output is no place for an access log
            pass

        @property
        def authorization(self) -> str | None:
            return self.headers.get("Authorization")

        def json(self) -> dict:
            return json.loads(self.body or b"{}")

        def do_GET(self) -> None:
            self.answer("GET")

        def do_HEAD(self) -> None:
            self.answer("HEAD")

        def do_POST(self) -> None:
            self.answer("POST")

        def answer(self, method: str) -> None:
            url = urlsplit(self.path)
            self.query = parse_qs(url.query)
            self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hub.lock:
                hub.requests.append((method, url.path))
                try:
                    headers, content = self.route(method, url.path)
                except HubError as err:
                    headers = {"Content-Type": "application/json", **({"X-Error-Code": err.code} if err.code else {})}
                    content = json.dumps({"error": err.message, **err.fields}).encode()
                    self.send(err.status, headers, content, method)
                    return
            self.send(200, headers, content, method)

        def route(self, method: str, path: str) -> tuple[dict, bytes]:
            for route_method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and method in (route_method, "HEAD" if route_method == "GET" else None):
                    arguments = {name: unquote(value) for name, value in match.groupdict().items()}
                    if handler is None:
                        return {}, b'{"errors": [], "warnings": []}'
                    result = getattr(hub, handler)(self, **arguments)
                    if isinstance(result, tuple):  # a file: its headers and bytes
                        return result
                    return {"Content-Type": "application/json"}, json.dumps(result).encode()
            raise HubError(404, f"{method} {path} is not part of this stand-in")

        def send(self, status: int, headers: dict, content: bytes, method: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(content)

    return Handler
