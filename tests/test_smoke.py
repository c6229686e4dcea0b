from ledger.domain.common import Actor
from tests.conftest import ADMIN


def test_borrow_and_return(ledger):
    ledger.join_library(
        code="SC-510100", name="成都市图书馆", region="sichuan", level="prefecture", actor=ADMIN
    )
    ledger.join_library(
        code="CQ-500103", name="渝中区图书馆", region="chongqing", level="county", actor=ADMIN
    )
    sc = Actor("key:sc", "SC-510100")
    cq = Actor("key:cq", "CQ-500103")
    ledger.register_item(owner="SC-510100", barcode="B1", title="三体", actor=sc)
    r = ledger.register_reader(
        document="resident_id", number="11010519491231002X", home_library="SC-510100", actor=sc
    )
    reader_id = r.outcome["reader_id"]
    loan = ledger.borrow(
        owner="SC-510100",
        barcode="B1",
        library="SC-510100",
        reader_number="11010519491231002X",
        actor=sc,
    )
    assert loan.notification_ids
    ret = ledger.return_item(owner="SC-510100", barcode="B1", library="CQ-500103", actor=cq)
    assert ret.outcome["disposition"] == "transfer_to_owner"
    item = ledger.get_item("SC-510100", "B1")
    assert item.status == "awaiting_transfer"
    assert reader_id
