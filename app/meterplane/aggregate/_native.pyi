"""Types of the native core (``_native.c``)."""

class Dedup:
    def __len__(self) -> int: ...
    def __contains__(self, ident: object) -> bool: ...
    def admit(self, customers: list[str], keys: list[str], at: int) -> list[int]: ...
    def forget_before(self, cutoff: int) -> None: ...
    def arrivals(self) -> list[tuple[int, list[tuple[str, str]]]]: ...

# (offsets, data) of one Arrow string or binary column
Column = tuple[bytes, bytes]

def scan_events(
    dedup: Dedup, body: bytes, received_us: int
) -> (
    tuple[
        int,
        list[int] | None,
        list[str],
        bytes,
        list[int],
        tuple[Column, Column, Column, Column, Column],
    ]
    | None
): ...
