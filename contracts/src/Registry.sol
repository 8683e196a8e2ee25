// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Registry: data and compute offers that nodes announce and index (paper §4.2).
/// @notice An offer's owner, kind, price and liveness are in one storage slot (what other
///         contracts or nodes must check); its schema/spec CID is only published in events.
contract Registry {
    enum Kind {
        Data, // a data provider's offer; CID names its data schema
        Compute // a computation provider's offer; CID names its resource specification
    }

    /// One slot: owner (160) | kind (8) | active (8) | price (80, wei; up to ~1.2M ETH).
    struct Offer {
        address owner;
        Kind kind;
        bool active;
        uint80 price;
    }

    /// Id the next offer gets; starts at 1 (set in the constructor so the first offer does not
    /// pay for a zero-to-nonzero write, and so id 0 never names a offer).
    uint256 public nextOfferId;
    mapping(uint256 offerId => Offer) private _offers;

    constructor() {
        nextOfferId = 1;
    }

    event OfferRegistered(
        uint256 indexed offerId, address indexed owner, Kind indexed kind, uint256 price, bytes32 cid, uint64 codec
    );
    event OfferUpdated(uint256 indexed offerId, uint256 price, bytes32 cid, uint64 codec);
    event OfferWithdrawn(uint256 indexed offerId);

    error NotOfferOwner(uint256 offerId, address caller);
    error OfferNotActive(uint256 offerId);
    error PriceTooLarge(uint256 price);
    error EmptyCid();

    /// Announce an offer of `kind` at `price` wei, described by the file `cid` (sha2-256 digest, `codec`).
    function registerOffer(Kind kind, bytes32 cid, uint64 codec, uint256 price) external returns (uint256 offerId) {
        if (cid == bytes32(0)) revert EmptyCid();
        if (price > type(uint80).max) revert PriceTooLarge(price);
        offerId = nextOfferId;
        unchecked {
            nextOfferId = offerId + 1;
        }
        _offers[offerId] = Offer({owner: msg.sender, kind: kind, active: true, price: uint80(price)});
        emit OfferRegistered(offerId, msg.sender, kind, price, cid, codec);
    }

    /// Change an active offer's price and description.
    function updateOffer(uint256 offerId, bytes32 cid, uint64 codec, uint256 price) external {
        Offer storage o = _offers[offerId];
        if (o.owner != msg.sender) revert NotOfferOwner(offerId, msg.sender);
        if (!o.active) revert OfferNotActive(offerId);
        if (cid == bytes32(0)) revert EmptyCid();
        if (price > type(uint80).max) revert PriceTooLarge(price);
        o.price = uint80(price);
        emit OfferUpdated(offerId, price, cid, codec);
    }

    /// Take an offer off the market (its id stays reserved).
    function withdrawOffer(uint256 offerId) external {
        Offer storage o = _offers[offerId];
        if (o.owner != msg.sender) revert NotOfferOwner(offerId, msg.sender);
        if (!o.active) revert OfferNotActive(offerId);
        o.active = false;
        emit OfferWithdrawn(offerId);
    }

    /// An offer's current state; owner is address(0) for an unknown id.
    function offer(uint256 offerId) external view returns (address owner, Kind kind, uint256 price, bool active) {
        Offer storage o = _offers[offerId];
        return (o.owner, o.kind, o.price, o.active);
    }
}
