"""`edge check-config --fetch URL`: each origin of the URL's endpoint asked for its original, in order, over the real
`edge` command: moto's S3 with a wrong secret, a web origin that refuses connections, a folder of 12 MP photos."""

import pytest

from tests.photos import SIZE, photos  # noqa: F401 - a fixture
from tests.s3server import shared_cache_table
from tests.test_cli_checks import edge_command

BUCKET = "check-originals"
WRONG_SECRET = "WRONG-SECRET-never-printed"


@pytest.fixture
def checked(tmp_path, s3, photos):  # noqa: F811 - photos is the fixture's value
    """`check-config --fetch` over an endpoint whose origins are, in order: S3 (its secret wrong), a web origin
    nothing listens for, the photos' folder; its result. `run(*urls, shared=bucket)` with a shared tier too."""
    s3.client().create_bucket(Bucket=BUCKET)
    s3.client().put_object(Bucket=BUCKET, Key="only-in-s3.jpg", Body=(photos.folder / photos.jpeg).read_bytes())
    (photos.folder.parent / "not-an-image.jpg").write_bytes(b"<html>an error page</html>")
    config = tmp_path / "edge.toml"
    config.write_text(s3.origin_table("bucket", BUCKET, secret=WRONG_SECRET) + f"""
[[origins]]
name = "website"
type = "web"
base_url = "http://127.0.0.1:9/"

[[origins]]
name = "photos"
type = "local"
root = "{photos.folder.parent}"

[[endpoints]]
id = "shop"
origins = ["bucket", "website", "photos"]

[cache]
dir = "{tmp_path / 'cache'}"
""")
    s3.require_auth(True)

    def run(*urls: str, shared: str | None = None):
        if shared is not None:
            config.write_text(config.read_text() + shared_cache_table(s3.url, shared))
        return edge_command("check-config", "--config", str(config), *(f"--fetch={url}" for url in urls))
    return run


def report(result) -> str:
    return result.stdout[result.stdout.index("\n}\n") + 3:]  # after the config's JSON


def test_each_origin_says_what_it_answered_until_one_has_the_image(checked, photos):  # noqa: F811
    folder = photos.folder.name
    result = checked(f"http://img.example.com/shop/tr:w-300/{folder}/{photos.jpeg}")
    assert result.returncode == 0, result.stderr
    lines = report(result).splitlines()
    assert lines[:2] == [f"OK  http://img.example.com/shop/tr:w-300/{folder}/{photos.jpeg}",
                         f"    endpoint 'shop', original '{folder}/{photos.jpeg}'"]
    assert lines[2].startswith(f"    bucket: failed (denied): GetObject '{folder}/{photos.jpeg}': "), lines[2]
    assert lines[3].startswith("    website: failed (refused): cannot connect to http://127.0.0.1:9")
    size = (photos.folder / photos.jpeg).stat().st_size
    assert lines[4].startswith(f"    photos: found, {size} bytes, no Content-Type (")
    assert lines[4].endswith(f"): jpeg {SIZE[0]}x{SIZE[1]}") and len(lines) == 5
    assert WRONG_SECRET not in result.stdout + result.stderr


def test_a_path_no_origin_has_or_no_image_is_exit_status_1(checked, s3):
    s3.require_auth(False)  # the bucket's own answers: it has one of them
    result = checked("/shop/only-in-s3.jpg", "/shop/nowhere.jpg", "/shop/not-an-image.jpg", "/elsewhere/x.jpg")
    assert result.returncode == 1, result.stderr
    lines = report(result).splitlines()
    assert lines[0] == "OK  /shop/only-in-s3.jpg" and lines[2].startswith("    bucket: found, ")
    assert lines[2].endswith(f"jpeg {SIZE[0]}x{SIZE[1]}") and lines[3] == "NO  /shop/nowhere.jpg"
    assert [line.split(":")[0] for line in lines[5:8]] == ["    bucket", "    website", "    photos"]
    assert lines[5].startswith("    bucket: not found (") and lines[7].startswith("    photos: not found (")
    assert lines[8] == "NO  /shop/not-an-image.jpg"
    assert lines[12].startswith("    photos: found, 26 bytes, ")
    assert lines[12].endswith(": unsupported or corrupt source image (a 422)")
    assert lines[13:] == ["NO  /elsewhere/x.jpg", "    404 unknown endpoint"]


def test_the_shared_tier_s_bucket_is_listed_written_and_deleted(checked, s3):
    """A shared tier a node could not use (no such bucket, wrong credentials) had started and said ready."""
    s3.require_auth(False)
    s3.client().create_bucket(Bucket="shared-outputs")
    result = checked("/shop/only-in-s3.jpg", shared="shared-outputs")
    assert result.returncode == 0, result.stderr
    said = report(result).splitlines()[-1]
    assert said.startswith("OK  shared cache: listed, wrote and deleted 'outputs/_check/"), said
    assert "Contents" not in s3.client().list_objects_v2(Bucket="shared-outputs")  # the probe object deleted


def test_a_shared_tier_bucket_that_does_not_exist_is_exit_status_1(checked, s3):
    s3.require_auth(False)
    result = checked("/shop/only-in-s3.jpg", shared="no-such-bucket")
    assert result.returncode == 1, result.stderr
    said = report(result).splitlines()[-1]
    assert said.startswith("NO  shared cache: failed (error): ListObjectsV2 'outputs/': NoSuchBucket"), said


@pytest.fixture
def two_folders(tmp_path, photos):  # noqa: F811 - photos is the fixture's value
    """`check-config --fetch` over an endpoint of two local origins, in order: `first`, which holds an error page
    under the 12 MP JPEG's name, and the photos' folder; `run(*urls, limits="", endpoint="")` with a `[limits]`
    table's lines and more of the endpoint's."""
    first = tmp_path / "first"
    first.mkdir()
    (first / photos.jpeg).write_bytes(b"<html>an error page</html>")

    def run(*urls: str, limits: str = "", endpoint: str = ""):
        config = tmp_path / "edge.toml"
        config.write_text(f"""
[[origins]]
name = "first"
type = "local"
root = "{first}"

[[origins]]
name = "photos"
type = "local"
root = "{photos.folder}"

[[endpoints]]
id = "shop"
origins = ["first", "photos"]
{endpoint}

[limits]
{limits}

[cache]
dir = "{tmp_path / 'cache'}"
""")
        return edge_command("check-config", "--config", str(config), *(f"--fetch={url}" for url in urls))
    return run


def test_an_origin_s_answer_that_is_no_image_is_the_answer_and_the_next_origin_is_not_asked(
        two_folders, photos):  # noqa: F811 - photos is the fixture's value
    """As a node serves the first origin's answer (here a 422) without asking the next one; a URL served after it
    leaves the exit status 1."""
    result = two_folders(f"/shop/{photos.jpeg}", f"/shop/{photos.medium}")
    assert result.returncode == 1, result.stderr
    lines = report(result).splitlines()
    assert lines[:2] == [f"NO  /shop/{photos.jpeg}", f"    endpoint 'shop', original '{photos.jpeg}'"]
    assert lines[2].startswith("    first: found, 26 bytes, ")
    assert lines[2].endswith(": unsupported or corrupt source image (a 422)")
    assert lines[3] == f"OK  /shop/{photos.medium}" and lines[6].startswith("    photos: found, ") and len(lines) == 7


def test_an_original_over_max_source_bytes_is_exit_status_1(two_folders, photos):  # noqa: F811
    size = (photos.folder / photos.medium).stat().st_size
    result = two_folders(f"/shop/{photos.medium}", limits=f"max_source_bytes = {size - 1}")
    assert result.returncode == 1, result.stderr
    lines = report(result).splitlines()
    assert lines[:2] == [f"NO  /shop/{photos.medium}", f"    endpoint 'shop', original '{photos.medium}'"]
    assert lines[2].startswith("    first: not found (")
    assert lines[3:] == [f"    photos: larger than [limits] max_source_bytes ({size - 1} bytes): a 400"]


def test_a_watermark_image_no_origin_has_is_exit_status_1_naming_it(two_folders, photos):  # noqa: F811
    """Every image of such an endpoint is a 502: the check had said OK, exit 0, for a URL of it. Each image the
    watermark draws is asked for as the URL's original is."""
    watermark = f'watermark = "l-image,i-{photos.medium},l-end,l-image,i-logo.png,l-end"'
    result = two_folders(f"/shop/tr:w-300/{photos.medium}", endpoint=watermark)
    assert result.returncode == 1, result.stderr
    lines = report(result).splitlines()
    assert lines[:2] == [f"NO  /shop/tr:w-300/{photos.medium}", f"    endpoint 'shop', original '{photos.medium}'"]
    assert lines[4] == "    endpoint 'shop', watermark image 'logo.png'"
    assert lines[5].startswith("    first: not found (") and lines[6].startswith("    photos: not found (")
    assert lines[7] == f"    endpoint 'shop', watermark image '{photos.medium}'"
    assert lines[9].startswith("    photos: found, ") and len(lines) == 10
