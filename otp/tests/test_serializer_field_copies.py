"""zeckta.api.fields.FieldsCopiedShallow: each serializer's fields are copies of the declared ones, made as
`copy.copy` would make them."""

import copy

import pytest

import otp.serializers
from zeckta.api.fields import FieldsCopiedShallow

SHALLOW = [
    value
    for value in vars(otp.serializers).values()
    if isinstance(value, type) and issubclass(value, FieldsCopiedShallow) and value is not FieldsCopiedShallow
]


def test_the_hot_paths_serializers_are_all_checked_here():
    assert {"OtpRequestInputSerializer", "OtpRequestDataSerializer", "OtpVerifyInputSerializer"} <= {
        serializer.__name__ for serializer in SHALLOW
    }


@pytest.mark.parametrize("serializer", SHALLOW, ids=lambda serializer: serializer.__name__)
def test_each_field_is_a_new_instance_equal_to_what_copy_copy_makes(serializer):
    declared = serializer._declared_fields
    fields = serializer().get_fields()
    assert fields.keys() == declared.keys()
    for name, field in fields.items():
        prototype = declared[name]
        assert field is not prototype
        assert type(field) is type(prototype)
        assert vars(field) == vars(copy.copy(prototype))
        # What copy.copy honours and the shortcut does not: no field class may define either.
        for cls in type(field).__mro__:
            assert "__copy__" not in vars(cls) and "__slots__" not in vars(cls), (name, cls)


def test_binding_a_copy_leaves_the_declared_field_unbound():
    serializer = otp.serializers.OtpRequestInputSerializer()
    bound = serializer.fields["dest"]
    assert bound.parent is serializer
    prototype = otp.serializers.OtpRequestInputSerializer._declared_fields["dest"]
    assert (prototype.parent, prototype.field_name) == (None, None)
