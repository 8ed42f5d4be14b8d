"""Publish a trained run on the Hugging Face Hub: a plain-transformers ViT at the root (with its ONNX files), the
mnist-vit model with its code in remote_code/, a model card with the run's results, in one commit.

    python push_to_hub.py --model_dir runs/mnist-vit --repo_id alice/mnist-vit --data_dir ../shared/mnist
    python push_to_hub.py --model_dir checkpoints/mnist-vit --root_model checkpoints/mnist-vit-root --repo_id alice/mnist-vit
    python push_to_hub.py --model_dir runs/mnist-vit --repo_id alice/mnist-vit --create_pr
    python push_to_hub.py --model_dir runs/mnist-vit --repo_id alice/mnist-vit --dry_run --staging_dir repo/

The folder is built and loaded in a fresh Python process before anything is sent; `--dry_run` stops
there. The token is --token, else the one saved by `hf auth login`.
"""

import argparse
import sys

from mnist_vit.errors import exit_status
from mnist_vit.hub_upload import publish


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_dir", required=True,
        help="A trained model with its image processor: a train.py --output_dir, or checkpoints/mnist-vit.",
    )
    parser.add_argument("--repo_id", required=True, help="The Hub repo to publish to: NAMESPACE/NAME.")
    parser.add_argument(
        "--root_model",
        help="A second trained model to put at the root, where tools without remote code read pictures through the "
        "stock ViT processor: one trained to read uploads that way, such as checkpoints/mnist-vit-root "
        "(default: --model_dir's model).",
    )
    parser.add_argument(
        "--data_dir", help="A folder with MNIST's IDX files, for the widget examples (default: the Hub's ylecun/mnist)."
    )
    parser.add_argument(
        "--private", action="store_true", help="Create the repo private (an existing repo keeps its visibility)."
    )
    parser.add_argument("--revision", help="The branch to commit to (created if missing); default: main.")
    parser.add_argument("--create_pr", action="store_true", help="Open a pull request instead of committing directly.")
    parser.add_argument("--commit_message", help="The commit's title (default: the test accuracy).")
    parser.add_argument("--token", help="A Hub token with write access (default: the one saved by `hf auth login`).")
    parser.add_argument("--dry_run", action="store_true", help="Build and check the repo folder, upload nothing.")
    parser.add_argument("--staging_dir", help="Build the repo folder here (new or empty) and keep it.")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_arguments(argv)
    url = publish(
        args.model_dir, args.repo_id, data_dir=args.data_dir, token=args.token, private=args.private,
        revision=args.revision, create_pr=args.create_pr, commit_message=args.commit_message,
        dry_run=args.dry_run, staging_dir=args.staging_dir, root_model=args.root_model,
    )
    if url is None:
        kept = f"it is in {args.staging_dir}" if args.staging_dir else "pass --staging_dir to keep it"
        print(f"Built and checked the repo folder; nothing was uploaded (--dry_run): {kept}.")
    else:
        print(f"Published {args.repo_id}: {url}")


if __name__ == "__main__":
    sys.exit(exit_status(lambda: main(sys.argv[1:])))
