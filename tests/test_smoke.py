from ledger import commands as c
from ledger.domain.common import Actor
from tests.conftest import ADMIN


def test_borrow_and_return(ledger):
    ledger.execute(
        c.JoinLibrary(
            code="SC-510100", name="成都市图书馆", region="sichuan", level="prefecture", actor=ADMIN
        )
    )
    ledger.execute(
        c.JoinLibrary(
            code="CQ-500103", name="渝中区图书馆", region="chongqing", level="county", actor=ADMIN
        )
    )
    sc = Actor("key:sc", "SC-510100")
    cq = Actor("key:cq", "CQ-500103")
    ledger.execute(c.RegisterItem(owner="SC-510100", barcode="B1", title="三体", actor=sc))
    r = ledger.execute(
        c.RegisterReader(
            document="resident_id", number="11010519491231002X", library="SC-510100", actor=sc
        )
    )
    reader_id = r.outcome["reader_id"]
    loan = ledger.execute(
        c.Borrow(
            owner="SC-510100",
            barcode="B1",
            library="SC-510100",
            reader=c.ReaderCard("11010519491231002X"),
            actor=sc,
        )
    )
    assert loan.notification_ids
    ret = ledger.execute(c.Return(owner="SC-510100", barcode="B1", library="CQ-500103", actor=cq))
    assert ret.outcome["disposition"] == "transfer_to_owner"
    item = ledger.get_item("SC-510100", "B1")
    assert item.status == "awaiting_transfer"
    assert reader_id
