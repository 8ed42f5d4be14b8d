"""Publishing a trained run on the Hugging Face Hub in one commit, with the Hub's errors told as one sentence each.

    publish("runs/mnist-vit", "alice/mnist-vit", data_dir="../shared/mnist")

`publish` checks the target and the token before building anything, stages the repo folder and checks it
(staging.py), then uploads it. The upload is one `create_commit`: with `hf_xet` installed `upload_folder`
streams a folder through a pipeline that may commit in several batches.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import httpx, validate_repo_id

from .errors import UserError
from .run_folder import check_run_dir, load_run
from .staging import load_test_split, stage, staging_folder, validate_staged_folder


@contextmanager
def hub_errors(api: HfApi, repo_id: str) -> Iterator[None]:
    """Turn the Hub client's errors into one sentence that says what to do.

    huggingface_hub sends requests with the HTTP client it exports as `huggingface_hub.utils.httpx`: its
    transport errors are the network failures.
    """
    try:
        yield
    except OfflineModeIsEnabled as err:
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it to publish.") from err
    except httpx.TransportError as err:
        raise UserError(
            f"Cannot reach the Hugging Face Hub at {api.endpoint} ({type(err).__name__}): "
            "check your network connection (and HF_ENDPOINT if you set it)."
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise UserError(
                "The Hub rejected your token (401 Unauthorized): it is wrong, expired or revoked. "
                "Run `hf auth login` with a token that has write access, or pass one with --token."
            ) from err
        if status == 403:
            raise UserError(
                f"Your token may not write to {repo_id} (403 Forbidden): use a token with write access to "
                "that namespace, or publish under your own username."
            ) from err
        if status == 404:
            raise UserError(
                f"{repo_id} was not found, or your token cannot see it (404 Not Found): check --repo_id, and "
                "that the token has access to that repo or namespace."
            ) from err
        raise UserError(f"The Hub refused the upload ({status}): {err.server_message or err}") from err


def check_write_access(api: HfApi, repo_id: str) -> None:
    """Refuse, before building anything, a token that cannot write or a namespace the account does not own."""
    with hub_errors(api, repo_id):
        account = api.whoami()
    if account.get("auth", {}).get("accessToken", {}).get("role") == "read":
        raise UserError(
            f"Your token for {account['name']} is read-only: create one with write access at "
            "https://huggingface.co/settings/tokens, then run `hf auth login` or pass it with --token."
        )
    namespaces = [account["name"], *(org["name"] for org in account.get("orgs", []))]
    namespace = repo_id.split("/")[0]
    if namespace not in namespaces:
        raise UserError(
            f"You are logged in as {account['name']}, who cannot publish under {namespace!r}: "
            f"choose --repo_id in {', '.join(repr(name) for name in namespaces)}."
        )


def upload(
    api: HfApi, folder: Path, repo_id: str, private: bool, revision: str | None, create_pr: bool, commit_message: str
) -> str:
    """Create the repo if needed and commit every file of `folder` in one commit; returns the URL to see it."""
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    with hub_errors(api, repo_id):
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)  # `private` applies to a new repo only
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations, commit_message=commit_message, revision=revision, create_pr=create_pr
        )
    if commit.pr_url:
        return commit.pr_url
    return f"{repo_url}/tree/{quote(revision, safe='')}" if revision else str(repo_url)


def check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--repo_id {repo_id!r} is not a valid repo id: {err}") from err
    if "/" not in repo_id:
        raise UserError(f"--repo_id must name its namespace, as in your-username/{repo_id}.")


def publish(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    data_dir: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
    staging_dir: str | os.PathLike | None = None,
    root_model: str | os.PathLike | None = None,
) -> str | None:
    """Build the repo of the run in `model_dir`, check it, and (unless `dry_run`) upload it to `repo_id`.

    Returns the URL of the published revision (or pull request); None for a dry run. `data_dir` holds
    MNIST's IDX files, for the widget examples and the ONNX check; without it they come from the Hub's
    `ylecun/mnist`. `root_model` is a second trained mnist-vit folder to put at the root instead of the run's
    model (one trained to read uploads through the stock processor, recipes/root.yaml).
    """
    check_repo_id(repo_id)
    path = check_run_dir(model_dir)
    root_path = check_run_dir(root_model, "--root_model") if root_model is not None else None
    api = None
    if not dry_run:
        token = token or get_token()
        if token is None:
            raise UserError("You are not logged in to the Hugging Face Hub: run `hf auth login`, or pass --token.")
        api = HfApi(token=token)
        check_write_access(api, repo_id)
    run = load_run(path)
    root = load_run(root_path) if root_path is not None else None
    test_split = load_test_split(data_dir)
    with staging_folder(staging_dir) as folder:
        stage(run, root, repo_id, revision, test_split, folder)
        validate_staged_folder(folder)
        if dry_run:
            return None
        accuracy = f": {run.test_results['test_accuracy']:.2%} test accuracy" if run.test_results else ""
        message = commit_message or f"Upload mnist-vit{accuracy}"
        return upload(api, folder, repo_id, private, revision, create_pr, message)
